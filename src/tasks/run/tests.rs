//! `with_retries` with paused time: how many tries, how long between them, when it gives up.

use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

const RETRY: Retry = Retry {
    attempts: 3,
    delay: Duration::from_secs(10),
};

/// Calls `with_retries` with an attempt that returns `results` in turn (a network failure is
/// `Err(true)`, another failure `Err(false)`); returns the result, the tries' start times (from
/// the start) and how many tries there were.
async fn tries(
    retry: Retry,
    results: &[Result<u32, bool>],
    cancel: &CancellationToken,
) -> (Result<u32, bool>, Vec<Duration>) {
    let start = Instant::now();
    let at = std::cell::RefCell::new(Vec::new());
    let n = Cell::new(0);
    let result = with_retries(
        retry,
        "test",
        cancel,
        |r: &Result<u32, bool>| match r {
            Err(true) => Some("network".to_string()),
            _ => None,
        },
        || {
            at.borrow_mut().push(start.elapsed());
            let i = n.get();
            n.set(i + 1);
            let result = results[i.min(results.len() - 1)];
            async move { result }
        },
    )
    .await;
    (result, at.into_inner())
}

#[tokio::test(start_paused = true)]
async fn a_network_failure_is_tried_again_with_doubling_waits() {
    let cancel = CancellationToken::new();
    let (result, at) = tries(RETRY, &[Err(true), Err(true), Ok(7)], &cancel).await;
    assert_eq!(result, Ok(7));
    assert_eq!(
        at,
        [
            Duration::ZERO,
            RETRY.delay_before(2),
            RETRY.delay_before(2) + RETRY.delay_before(3)
        ]
    );
    assert_eq!(RETRY.delay_before(3), 2 * RETRY.delay_before(2));
}

#[tokio::test(start_paused = true)]
async fn it_gives_up_after_the_last_attempt_with_the_last_result() {
    let (result, at) = tries(RETRY, &[Err(true)], &CancellationToken::new()).await;
    assert_eq!(result, Err(true));
    assert_eq!(at.len(), 3);
    let once = Retry {
        attempts: 1,
        ..RETRY
    };
    let (result, at) = tries(once, &[Err(true)], &CancellationToken::new()).await;
    assert_eq!((result, at.len()), (Err(true), 1));
}

#[tokio::test(start_paused = true)]
async fn another_failure_or_a_success_returns_at_once() {
    let (result, at) = tries(RETRY, &[Err(false), Ok(1)], &CancellationToken::new()).await;
    assert_eq!((result, at), (Err(false), vec![Duration::ZERO]));
    let (result, at) = tries(RETRY, &[Ok(2)], &CancellationToken::new()).await;
    assert_eq!((result, at.len()), (Ok(2), 1));
}

#[tokio::test(start_paused = true)]
async fn a_cancel_during_the_wait_returns_the_last_result() {
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        canceller.cancel();
    });
    let started = Instant::now();
    let (result, at) = tries(RETRY, &[Err(true), Ok(1)], &cancel).await;
    assert_eq!((result, at.len()), (Err(true), 1));
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    // Already cancelled: one try, no wait.
    let (result, at) = tries(RETRY, &[Err(true), Ok(1)], &cancel).await;
    assert_eq!((result, at.len()), (Err(true), 1));
}
