//! A private PostgreSQL server for tests: a new cluster (`initdb`) in a temporary folder,
//! started on a free loopback port with trust authentication, stopped and deleted on drop.
//!
//! The server binaries come from `$MURMUR_PG_BIN`, else the newest
//! `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package, which `scripts/setup --tests`
//! installs), else `PATH`. PostgreSQL refuses to run as root: as root, the cluster belongs to
//! the `postgres` user the package creates, and its commands run through `runuser`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running PostgreSQL server of its own.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run server commands as this user (when the tests run as root).
    user: Option<&'static str>,
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MURMUR_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| d.join("initdb").exists())
        .unwrap_or_else(|| {
            panic!(
                "no PostgreSQL server binaries (initdb, pg_ctl): install Debian's `postgresql` \
                 package (scripts/setup --tests does) or set MURMUR_PG_BIN to their folder"
            )
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    /// Creates and starts a cluster; returns once it accepts connections.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("murmur-pg-")
            .tempdir()
            .expect("a temporary folder for PostgreSQL");
        let user = is_root().then_some("postgres");
        if let Some(user) = user {
            let ok = Command::new("chown")
                .args([&format!("{user}:"), &dir.path().display().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "cannot give {} to the `{user}` user",
                dir.path().display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let pg = Postgres {
            dir,
            bin,
            port,
            user,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "murmur",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.restart();
        pg
    }

    fn data(&self) -> String {
        format!("{}/data", self.dir.path().display())
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self
            .command(program)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed ({}):\n{}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new empty database; its connection URL.
    pub fn database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(name)
    }

    /// The connection URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://murmur@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` on database `db` with `psql`; the rows, one per line, fields separated
    /// by `|`.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let url = self.url(db);
        self.run(
            "psql",
            &["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", &url, "-c", sql],
        )
    }

    /// Stops the server (fast shutdown: connections are closed), keeping its data.
    pub fn stop(&self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }

    /// Starts the server (again, after [`Postgres::stop`]) on its port; returns once it
    /// accepts connections.
    pub fn restart(&self) {
        let data = self.data();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = format!("{}/server.log", self.dir.path().display());
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-o", &options, "-l", &log, "-w", "-t", "60", "start",
            ],
        );
    }

    /// Makes the server offer TLS with a certificate for 127.0.0.1 and `localhost`, signed
    /// by a new certificate authority (made with the `openssl` command, which
    /// `scripts/setup --tests` installs); returns the authority's PEM file.
    pub fn enable_tls(&self) -> PathBuf {
        let dir = self.dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509", "-days", "2", "-subj", "/CN=Murmur test CA"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.pem"],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req", "-subj", "/CN=127.0.0.1"][..],
                &ec,
                &["-keyout", "server.key", "-out", "server.csr"],
            ]
            .concat(),
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .expect("write server.ext");
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]);
        let key = dir.join("server.key");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod server.key");
        if let Some(user) = self.user {
            let ok = Command::new("chown")
                .arg(format!("{user}:"))
                .args([&key, &dir.join("server.crt")])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot give the server's key to `{user}`");
        }
        self.psql("postgres", "ALTER SYSTEM SET ssl = on");
        self.psql(
            "postgres",
            &format!(
                "ALTER SYSTEM SET ssl_cert_file = '{}'",
                dir.join("server.crt").display()
            ),
        );
        self.psql(
            "postgres",
            &format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
        );
        self.stop();
        self.restart();
        dir.join("ca.pem")
    }

    /// The folder of the cluster, for its log.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
