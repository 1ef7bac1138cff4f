//! Application-consistent database backups, the recipes in docs/labels.md: PostgreSQL, MariaDB, SQLite and
//! Redis (Debian's, in an image built here) under a write load, with `backup.exec-pre` writing a
//! dump into the volume. Each dump, taken from the archive, restores into a fresh server (or is
//! opened), and its data satisfy the load's invariant: every move takes one unit from one account
//! to the other (and, where there are tables, logs itself) in one transaction.

mod common;

use std::time::{Duration, Instant};

use common::*;

const DB_IMAGE: &str = "backup-sidecar-databases:latest";
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// psql as the postgres user through the server's socket, stopping at the first error.
const PSQL: [&str; 10] = [
    "runuser",
    "-u",
    "postgres",
    "--",
    "psql",
    "-h",
    "/run/postgresql",
    "-X",
    "-v",
    "ON_ERROR_STOP=1",
];

/// Runs psql in `container` with `args`; returns stdout, trimmed.
fn psql_with(container: &str, args: &[&str]) -> String {
    let mut argv = vec!["exec", container];
    argv.extend(PSQL);
    argv.extend(args);
    docker(&argv).trim().to_string()
}

/// One query's rows, unaligned.
fn psql(container: &str, sql: &str) -> String {
    psql_with(container, &["-Atq", "-c", sql])
}

fn wait_ready(container: &str) {
    let probe = format!("{} -Atc 'select 1'", PSQL.join(" "));
    wait_for("PostgreSQL to accept connections", container, &probe);
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
        DB_IMAGE,
        &["pg"],
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
    let fresh = env.container("fresh", &["-v", &fresh_mount], DB_IMAGE, &["pg"]);
    wait_ready(&fresh);
    from_archive(
        &env,
        &remote,
        &archive,
        &format!("{volume}/dump.sql"),
        &fresh,
        "/tmp/dump.sql",
    );
    let dump_bytes = sh(&fresh, "wc -c < /tmp/dump.sql");
    let restore_started = Instant::now();
    psql_with(&fresh, &["-q", "-f", "/tmp/dump.sql"]);
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
        dump_bytes, moves_at_end
    );
}

/// Runs `script` with `sh -c` in `container`; returns stdout, trimmed.
fn sh(container: &str, script: &str) -> String {
    docker(&["exec", container, "sh", "-c", script])
        .trim()
        .to_string()
}

/// Starts `server` of the database image in a container of the test's project with its volume
/// at /data, not frozen (the dump is what makes it consistent), with `pre` as its exec-pre.
fn database(env: &Env, volume: &str, server: &str, pre: &str) -> String {
    let mount = format!("{volume}:/data");
    let project = env.project_label();
    let pre = format!("backup.exec-pre={pre}");
    env.container(
        "db",
        &[
            "--label",
            &project,
            "--label",
            "backup.quiesce=none",
            "--label",
            &pre,
            "-v",
            &mount,
        ],
        DB_IMAGE,
        &[server],
    )
}

/// Runs the sidecar once (run on start); returns the archive, after checking the run succeeded.
fn backed_up(env: &Env, remote: &Remote) -> String {
    let sidecar = env.sidecar(remote, &[]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    run["fields"]["archive"].as_str().unwrap().to_string()
}

/// Copies `path` of the volume from `archive` into `container` at `to`.
fn from_archive(env: &Env, remote: &Remote, archive: &str, path: &str, container: &str, to: &str) {
    env.on_remote(
        remote,
        &format!(
            "cd /tmp && BORG_PASSPHRASE='{PASSPHRASE}' borg extract /backup/borg::{archive} {path}"
        ),
    );
    let local = env.ssh_path("from-archive");
    let _ = std::fs::remove_file(&local);
    docker(&[
        "cp",
        &format!("{}:/tmp/{path}", remote.name),
        local.to_str().unwrap(),
    ]);
    docker(&["cp", local.to_str().unwrap(), &format!("{container}:{to}")]);
}

fn wait_for(what: &str, container: &str, probe: &str) {
    wait_until(what, Duration::from_secs(60), || {
        docker_output(&["exec", container, "sh", "-c", probe])
            .status
            .success()
    });
}

#[test]
fn a_mariadb_dump_with_single_transaction_restores_with_its_invariant() {
    let env = Env::new("mariadb");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    let db = database(
        &env,
        &volume,
        "mariadb",
        "mariadb-dump --single-transaction --databases bank > /tmp/dump.sql && \
         mv /tmp/dump.sql /data/dump.sql",
    );
    wait_for("MariaDB", &db, "mariadb -e 'select 1'");
    sh(
        &db,
        "mariadb -e \"create database bank; use bank; \
         create table accounts (id int primary key, balance int not null) engine=InnoDB; \
         insert into accounts values (1, 500), (2, 500); \
         create table moves (id int auto_increment primary key, pad text) engine=InnoDB;\"",
    );
    docker(&[
        "exec",
        "-d",
        &db,
        "sh",
        "-c",
        "while :; do mariadb bank -e \"start transaction; \
         update accounts set balance = balance - 1 where id = 1; \
         update accounts set balance = balance + 1 where id = 2; \
         insert into moves (pad) values (repeat('x', 200)); commit;\"; done",
    ]);
    wait_until("the load to run", Duration::from_secs(30), || {
        sh(&db, "mariadb -N bank -e 'select count(*) from moves'")
            .parse::<u64>()
            .unwrap_or(0)
            > 50
    });
    let archive = backed_up(&env, &remote);

    let fresh_volume = env.volume("fresh", &[]);
    let fresh = env.container(
        "fresh",
        &["-v", &format!("{fresh_volume}:/data")],
        DB_IMAGE,
        &["mariadb"],
    );
    wait_for("a fresh MariaDB", &fresh, "mariadb -e 'select 1'");
    from_archive(
        &env,
        &remote,
        &archive,
        &format!("{volume}/dump.sql"),
        &fresh,
        "/tmp/dump.sql",
    );
    sh(&fresh, "mariadb < /tmp/dump.sql");
    let moves: u64 = sh(&fresh, "mariadb -N bank -e 'select count(*) from moves'")
        .parse()
        .unwrap();
    assert!(moves > 50, "{moves}");
    assert_eq!(
        sh(
            &fresh,
            "mariadb -N bank -e 'select (select sum(balance) from accounts) = 1000 and \
             (select balance from accounts where id = 2) = 500 + (select count(*) from moves)'"
        ),
        "1",
        "the dump is one consistent instant"
    );
    println!("mariadb-dump --single-transaction under load: {moves} moves, invariant holds");
}

#[test]
fn a_sqlite_backup_restores_with_its_invariant() {
    let env = Env::new("sqlite");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    let db = database(
        &env,
        &volume,
        "sqlite",
        "sqlite3 -cmd '.timeout 10000' /data/app.db '.backup /data/app.db.backup'",
    );
    sh(
        &db,
        "sqlite3 /data/app.db \"create table accounts (id integer primary key, balance int); \
         insert into accounts values (1, 500), (2, 500); \
         create table moves (id integer primary key, pad text);\"",
    );
    docker(&[
        "exec",
        "-d",
        &db,
        "sh",
        "-c",
        "while :; do sqlite3 -cmd '.timeout 10000' /data/app.db \"begin immediate; \
         update accounts set balance = balance - 1 where id = 1; \
         update accounts set balance = balance + 1 where id = 2; \
         insert into moves (pad) values (printf('%.200c', 'x')); commit;\"; done",
    ]);
    wait_until("the load to run", Duration::from_secs(30), || {
        sh(
            &db,
            "sqlite3 -cmd '.timeout 10000' /data/app.db 'select count(*) from moves'",
        )
        .parse::<u64>()
        .unwrap_or(0)
            > 50
    });
    let archive = backed_up(&env, &remote);
    from_archive(
        &env,
        &remote,
        &archive,
        &format!("{volume}/app.db.backup"),
        &db,
        "/tmp/restored.db",
    );
    assert_eq!(
        sh(&db, "sqlite3 /tmp/restored.db 'pragma integrity_check'"),
        "ok"
    );
    let moves: u64 = sh(&db, "sqlite3 /tmp/restored.db 'select count(*) from moves'")
        .parse()
        .unwrap();
    assert!(moves > 50, "{moves}");
    assert_eq!(
        sh(
            &db,
            "sqlite3 /tmp/restored.db 'select (select sum(balance) from accounts) = 1000 and \
             (select balance from accounts where id = 2) = 500 + (select count(*) from moves)'"
        ),
        "1"
    );
    println!("sqlite3 .backup under load: {moves} moves, invariant holds");
}

/// The Redis recipe: BGSAVE, then wait until INFO counts one more completed save.
const REDIS_SAVE: &str = "s=/run/redis.sock; \
    saves() { redis-cli -s $s INFO persistence | sed -n 's/^rdb_saves:\\([0-9]*\\).*/\\1/p'; }; \
    n=$(saves); redis-cli -s $s BGSAVE >/dev/null; \
    until [ \"$(saves)\" -gt \"$n\" ]; do sleep 0.1; done; \
    redis-cli -s $s INFO persistence | grep -q '^rdb_last_bgsave_status:ok'";

#[test]
fn a_redis_bgsave_restores_with_its_invariant() {
    let env = Env::new("redis");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    let db = database(&env, &volume, "redis", REDIS_SAVE);
    let cli = "redis-cli -s /run/redis.sock";
    wait_for("Redis", &db, &format!("{cli} ping"));
    sh(&db, &format!("{cli} mset a 500 b 500"));
    docker(&[
        "exec",
        "-d",
        &db,
        "sh",
        "-c",
        &format!("while :; do printf 'MULTI\\nDECR a\\nINCR b\\nEXEC\\n' | {cli} >/dev/null; done"),
    ]);
    wait_until("the load to run", Duration::from_secs(30), || {
        sh(&db, &format!("{cli} get b")).parse::<i64>().unwrap_or(0) > 550
    });
    let archive = backed_up(&env, &remote);

    let fresh_volume = env.volume("fresh", &[]);
    let fresh_mount = format!("{fresh_volume}:/data");
    let fresh = format!("{}-fresh", env.name);
    env.track_container(&fresh);
    docker(&[
        "create",
        "--name",
        &fresh,
        "--label",
        TEST_LABEL,
        "-v",
        &fresh_mount,
        DB_IMAGE,
        "redis",
    ]);
    env.with_volume(&fresh_volume, &[APP_IMAGE, "mkdir", "-p", "/data/redis"]);
    from_archive(
        &env,
        &remote,
        &archive,
        &format!("{volume}/redis/dump.rdb"),
        &fresh,
        "/data/redis/dump.rdb",
    );
    docker(&["start", &fresh]);
    wait_for("the fresh Redis", &fresh, &format!("{cli} ping"));
    let a: i64 = sh(&fresh, &format!("{cli} get a")).parse().unwrap();
    let b: i64 = sh(&fresh, &format!("{cli} get b")).parse().unwrap();
    assert_eq!(a + b, 1000, "a={a} b={b}");
    assert!(b > 550, "the saved data holds the load's moves: b={b}");
    println!(
        "redis BGSAVE under load: {} moves, invariant holds",
        b - 500
    );
}
