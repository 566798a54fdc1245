//! The benchmark's database: a scratch database on the throwaway server, migrated by the service's own
//! `app migrate`, holding one account with an API token and the 50 notes the list route pages through.

use anyhow::{Context as _, Result};
use camino::Utf8Path;

use crate::postgres::client::{self, ScratchDatabase};

/// A throwaway database's token, not a secret: it opens nothing but the benchmark's own notes.
pub(crate) const TOKEN: &str = "ss_benchmark-token-for-a-throwaway-database-only";
/// What the list route returns in one page, as the limit's SQL asks for.
pub(crate) const NOTES: u32 = 50;

const SEED: &str = "
INSERT INTO accounts (id, email, password_hash)
    VALUES ('00000000-0000-7000-8000-000000000001', 'bench@example.com', 'not a password hash');
INSERT INTO api_tokens (id, account_id, name, token_hash)
    VALUES ('00000000-0000-7000-8000-000000000002', '00000000-0000-7000-8000-000000000001', 'bench',
            sha256(convert_to(:'token', 'UTF8')));
INSERT INTO notes (id, account_id, title, body)
    SELECT gen_random_uuid(), '00000000-0000-7000-8000-000000000001', format('note %s', n),
           repeat(format('the body of note %s. ', n), 8)
    FROM generate_series(1, :notes) AS n;
";

/// Creates, migrates and seeds the database; it is dropped when the returned value is.
pub(crate) fn database(server_url: &str, app: &Utf8Path) -> Result<ScratchDatabase> {
    let scratch = ScratchDatabase::create(server_url, &format!("bench_{}", std::process::id()))?;
    duct::cmd(app.as_std_path(), ["migrate"])
        .env("DATABASE_URL", &scratch.url)
        .stdout_null()
        .run()
        .context("migrating the benchmark database with `app migrate`")?;
    let mut psql = client::program("psql")?;
    psql.args(["--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1", "--dbname", &scratch.url]).args([
        "--set",
        &format!("token={TOKEN}"),
        "--set",
        &format!("notes={NOTES}"),
    ]);
    client::output(with_script(psql, SEED)?, "seeding the benchmark database")?;
    Ok(scratch)
}

/// `command` reading `script` from a file, where psql interpolates `:'variables'` (`--command` does not).
fn with_script(mut command: std::process::Command, script: &str) -> Result<std::process::Command> {
    let file = crate::project::target_dir().join("bench/seed.sql");
    std::fs::create_dir_all(file.parent().context("a parent")?)?;
    std::fs::write(&file, script).with_context(|| format!("writing {file}"))?;
    command.args(["--file", file.as_str()]);
    Ok(command)
}
