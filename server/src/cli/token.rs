//! `byom-server token create|revoke`: manage tokens straight in the data directory (works
//! while the server runs: SQLite in WAL mode).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::auth::{self, Revoked, Role};
use crate::db::DatabaseUrl;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Subcommand)]
pub enum Action {
    /// Create a token (and the tenant, if new); prints the secret once.
    Create {
        #[arg(long)]
        tenant: String,
        /// viewer, uploader, admin (of its own tenant) or operator (tenant "admin" only: manages
        /// every tenant).
        #[arg(long)]
        role: String,
        #[arg(long, env = "BYOM_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        /// The database, as `serve --database` [default: sqlite:<data-dir>/byom.db].
        #[arg(long, env = "BYOM_DATABASE")]
        database: Option<DatabaseUrl>,
    },
    /// Revoke a token by its id (tok_…).
    Revoke {
        id: String,
        #[arg(long, env = "BYOM_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        /// The database, as `serve --database` [default: sqlite:<data-dir>/byom.db].
        #[arg(long, env = "BYOM_DATABASE")]
        database: Option<DatabaseUrl>,
    },
}

pub fn run(args: Args) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("byom-server token: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(act(args.action)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("byom-server token: {e}");
            ExitCode::from(2)
        }
    }
}

/// The database `--database` names, or the embedded one in `data_dir`.
async fn open(
    data_dir: &std::path::Path,
    database: Option<DatabaseUrl>,
) -> Result<sqlx::AnyPool, sqlx::Error> {
    let url = database.unwrap_or_else(|| DatabaseUrl::default_for(data_dir));
    Ok(crate::db::open(&url).await?.pool)
}

async fn act(action: Action) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match action {
        Action::Create {
            tenant,
            role,
            data_dir,
            database,
        } => {
            let Some(role) = Role::parse(&role) else {
                eprintln!("role must be viewer, uploader, admin or operator");
                return Ok(ExitCode::from(2));
            };
            if !auth::valid_tenant_name(&tenant) {
                eprintln!("tenant name: 1 to 64 of a-z, 0-9, - and _");
                return Ok(ExitCode::from(2));
            }
            if let Err(why) = auth::check_role_for_tenant(&tenant, role) {
                eprintln!("{why}");
                return Ok(ExitCode::from(2));
            }
            std::fs::create_dir_all(&data_dir)?;
            let db = open(&data_dir, database).await?;
            if auth::ensure_tenant(&db, &tenant, None).await? {
                eprintln!("created tenant {tenant}");
            }
            let token = auth::create_token(&db, &tenant, role, None).await?;
            eprintln!(
                "token id {} (tenant {}, role {})",
                token.id, token.tenant, token.role
            );
            println!("{}", token.token);
            Ok(ExitCode::SUCCESS)
        }
        Action::Revoke {
            id,
            data_dir,
            database,
        } => {
            let db = open(&data_dir, database).await?;
            match auth::revoke_token(&db, &id, None).await? {
                Revoked::Done => {
                    eprintln!("revoked {id}");
                    Ok(ExitCode::SUCCESS)
                }
                Revoked::LastOperator => {
                    eprintln!("{id} is the last live operator token; create another operator token first (token create --tenant admin --role operator)");
                    Ok(ExitCode::from(1))
                }
                // The CLI has no tenant scope, so this is only "not found".
                Revoked::NotFound | Revoked::OperatorToken => {
                    eprintln!("no live token {id}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
