//! The soak's private servers and bot processes: a Redis server and a PostgreSQL cluster of
//! its own on free ports (so killing them touches nobody else), and the `gmbot-bot` instances,
//! each a child process. Everything is killed when its guard is dropped.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on right now (bound, then released).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn wait_port(port: u16, up: bool, within: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let open = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        if open == up {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A private `redis-server` (no persistence) on a free port.
pub(crate) struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts it; panics naming the problem if `redis-server` cannot run.
    pub(crate) fn start() -> Self {
        let mut r = Self {
            port: free_port(),
            child: None,
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:<port>/`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server with SIGKILL (its data is gone: nothing is persisted).
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        wait_port(self.port, false, Duration::from_secs(5));
    }

    /// Starts the server again on the same port (after [`Self::kill`]).
    pub(crate) fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (is Redis installed?)");
        self.child = Some(child);
        assert!(
            wait_port(self.port, true, Duration::from_secs(10)),
            "the private redis-server did not listen on port {}",
            self.port
        );
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The directory of PostgreSQL's server programs (`initdb`, `pg_ctl`).
fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("GMBOT_SOAK_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.retain(|p| p.join("pg_ctl").exists());
    found.sort();
    found.pop().expect(
        "PostgreSQL's server programs under /usr/lib/postgresql/*/bin (or GMBOT_SOAK_PG_BIN)",
    )
}

fn output(cmd: &mut Command) -> String {
    match cmd.output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        Err(_) => String::new(),
    }
}

/// A private PostgreSQL cluster in a temporary directory, on a free port, run as the
/// `postgres` user when this process is root (initdb refuses root).
pub(crate) struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// Creates the cluster and starts it; panics naming the step that failed.
    pub(crate) fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gmbot-soak-pg")
            .tempdir()
            .expect("a temporary directory");
        let as_postgres = output(Command::new("id").arg("-u")) == "0";
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres", &dir.path().display().to_string()])
                .status()
                .expect("chown runs");
            assert!(
                status.success(),
                "cannot give the data directory to postgres"
            );
        }
        let pg = Self {
            dir,
            port: free_port(),
            bin: pg_bin(),
            as_postgres,
        };
        let data = pg.data();
        let status = pg
            .command("initdb")
            .args([
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(status.success(), "initdb failed for {data}");
        pg.start_server();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn log(&self) -> String {
        self.dir.path().join("server.log").display().to_string()
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let status = self
            .command("pg_ctl")
            .args([
                "-D",
                &self.data(),
                "-o",
                &opts,
                "-l",
                &self.log(),
                "-w",
                "start",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(
            status.success(),
            "pg_ctl start failed (log: {})",
            self.log()
        );
    }

    /// Stops the server (fast shutdown: open connections are closed).
    pub(crate) fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Starts it again after [`Self::stop`].
    pub(crate) fn start_again(&self) {
        self.start_server();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One `gmbot-bot` process, restartable on the same port.
pub(crate) struct Instance {
    /// Its `HTTP_LISTEN` port.
    pub(crate) port: u16,
    bin: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Instance {
    /// An instance of `bin` with these environment variables, logging to `log`; not started.
    pub(crate) fn new(bin: &Path, env: Vec<(String, String)>, log: PathBuf) -> Self {
        let port = free_port();
        let mut env = env;
        env.push(("HTTP_LISTEN".into(), format!("127.0.0.1:{port}")));
        Self {
            port,
            bin: bin.to_owned(),
            env,
            log,
            child: None,
        }
    }

    /// The listening address.
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts the process (its log is appended to).
    pub(crate) fn start(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("instance log file");
        let child = Command::new(&self.bin)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the gmbot-bot binary starts");
        self.child = Some(child);
    }

    /// CPU seconds (user + system) the process has used so far.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        self.child.as_ref().map_or(0.0, |c| {
            process_cpu_seconds(&format!("/proc/{}/stat", c.id()))
        })
    }

    /// Whether the process is running (not exited).
    pub(crate) fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process with SIGKILL and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; whether it exited by itself.
    pub(crate) fn terminate(&mut self, grace: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// The last `lines` lines of its log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sockets in state ESTABLISHED whose remote port is one of `ports` (the harness's side of
/// connections to the instances), from `/proc/net/tcp`.
pub(crate) fn established_to(ports: &[u16]) -> usize {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[3] == "01"
                && f[2]
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                    .is_some_and(|p| ports.contains(&p))
        })
        .count()
}

/// `GET path` on `addr`: the status and body, or `None` when nothing answers.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// CPU seconds (user + system) of the process whose `/proc/…/stat` this is (0 if unreadable).
pub(crate) fn process_cpu_seconds(stat: &str) -> f64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// (busy, total) CPU seconds of the whole machine so far, from `/proc/stat`.
pub(crate) fn machine_cpu_seconds() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else {
        return (0.0, 0.0);
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    ((total - idle) / 100.0, total / 100.0)
}
