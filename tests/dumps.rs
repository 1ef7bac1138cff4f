//! An application-consistent database backup: PostgreSQL (Debian's, in an image built here) under
//! a write load, with `backup.exec-pre` running `pg_dump` into its volume. The dump, taken from the
//! archive, restores into a fresh server, and its rows satisfy the load's invariant.

mod common;

use std::time::{Duration, Instant};

use common::*;

const PG_IMAGE: &str = "backup-sidecar-postgres:latest";
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// psql as the postgres user through the server's socket.
fn psql(container: &str, sql: &str) -> String {
    docker(&[
        "exec",
        container,
        "runuser",
        "-u",
        "postgres",
        "--",
        "psql",
        "-h",
        "/run/postgresql",
        "-XAtq",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ])
    .trim()
    .to_string()
}

fn wait_ready(container: &str) {
    wait_until(
        "PostgreSQL to accept connections",
        Duration::from_secs(60),
        || {
            docker_output(&[
                "exec",
                container,
                "runuser",
                "-u",
                "postgres",
                "--",
                "psql",
                "-h",
                "/run/postgresql",
                "-Atc",
                "select 1",
            ])
            .status
            .success()
        },
    );
}

/// The load's invariant: every move takes one unit from account 1 to account 2 and logs itself,
/// so the balances sum to 1000 and account 2 holds 500 plus one per logged move.
const INVARIANT: &str = "select (select sum(balance) from accounts) = 1000 \
    and (select balance from accounts where id = 2) = 500 + (select count(*) from moves)";

#[test]
fn a_pg_dump_under_load_restores_into_a_fresh_server_with_its_invariant() {
    let env = Env::new("pgdump");
    let remote = env.remote();
    let volume = env.volume("pgdata", &["backup.enable=true", &env.project_label()]);
    let mount = format!("{volume}:/data");
    let project = env.project_label();
    let dump = "runuser -u postgres -- pg_dump -h /run/postgresql -d postgres -f /tmp/dump.sql \
                && mv /tmp/dump.sql /data/dump.sql && echo \"dump of $(wc -c < /data/dump.sql) bytes\"";
    let pre = format!("backup.exec-pre={dump}");
    let db = env.container(
        "db",
        &[
            "--label",
            &project,
            "--label",
            "backup.quiesce=none",
            "--label",
            &pre,
            "--label",
            "backup.exec-timeout=2m",
            "-v",
            &mount,
        ],
        PG_IMAGE,
        &[],
    );
    wait_ready(&db);
    psql(
        &db,
        "create table accounts (id int primary key, balance int not null); \
         insert into accounts values (1, 500), (2, 500); \
         create table moves (id serial primary key, at timestamptz default now(), pad text);",
    );
    // The load: moves all the time, each in one transaction, from a loop inside the container.
    let load = "while :; do runuser -u postgres -- psql -h /run/postgresql -Xq -c \
        \"begin; update accounts set balance = balance - 1 where id = 1; \
        update accounts set balance = balance + 1 where id = 2; \
        insert into moves (pad) values (repeat('x', 200)); commit;\" >/dev/null 2>&1; done";
    docker(&["exec", "-d", &db, "sh", "-c", load]);
    wait_until("the load to run", Duration::from_secs(30), || {
        psql(&db, "select count(*) from moves")
            .parse::<u64>()
            .unwrap_or(0)
            > 50
    });

    let sidecar = env.sidecar(&remote, &[]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let archive = run["fields"]["archive"].as_str().unwrap().to_string();
    let moves_at_end = psql(&db, "select count(*) from moves");
    let said: Vec<String> = events_named(&sidecar, "exec output")
        .iter()
        .map(|e| e["fields"]["line"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(said.iter().any(|l| l.starts_with("dump of ")), "{said:?}");

    // The disaster: a fresh server, the dump from the archive.
    let fresh_volume = env.volume("fresh", &[]);
    let fresh_mount = format!("{fresh_volume}:/data");
    let fresh = env.container("fresh", &["-v", &fresh_mount], PG_IMAGE, &[]);
    wait_ready(&fresh);
    let sql = env.borg(
        &remote,
        &[
            "extract",
            "--stdout",
            &format!("/backup/borg::{archive}"),
            &format!("{volume}/dump.sql"),
        ],
    );
    std::fs::write(env.ssh_path("dump.sql"), &sql).unwrap();
    docker(&[
        "cp",
        env.ssh_path("dump.sql").to_str().unwrap(),
        &format!("{fresh}:/tmp/dump.sql"),
    ]);
    let restore_started = Instant::now();
    docker(&[
        "exec",
        &fresh,
        "runuser",
        "-u",
        "postgres",
        "--",
        "psql",
        "-h",
        "/run/postgresql",
        "-Xq",
        "-v",
        "ON_ERROR_STOP=1",
        "-f",
        "/tmp/dump.sql",
    ]);
    let restore_seconds = restore_started.elapsed().as_secs_f64();
    assert_eq!(
        psql(&fresh, INVARIANT),
        "t",
        "the dump is one consistent instant"
    );
    let moves: u64 = psql(&fresh, "select count(*) from moves").parse().unwrap();
    assert!(moves > 50, "the dump holds the load's rows: {moves}");
    println!(
        "pg_dump under load: {} bytes, {moves} moves in the dump (the live database had {} by the \
         end of the run), restored into a fresh server in {restore_seconds:.2} s; invariant holds",
        sql.len(),
        moves_at_end
    );
}
