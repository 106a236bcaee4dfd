use clap::Parser;

use minimart::config::Config;
use minimart::startup::Application;
use minimart::telemetry;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    telemetry::init(config.log_format);
    let served = match Application::build(config).await {
        Ok(app) => app.run_until_signalled().await,
        Err(error) => {
            tracing::error!(error = %telemetry::error_chain(&error), "minimart could not start");
            return std::process::ExitCode::FAILURE;
        }
    };
    match served {
        Ok(()) => {
            tracing::info!("minimart stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = %error, "minimart stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}
