//! `ledger-capacity`: the ledger under the capacity model, before and after markers and
//! shards: one tenant's requests (half cache hits) over 16 warm instances, every DynamoDB
//! write counted per item, modelled at 1,000 requests per second. Prints the write units
//! per request, the busiest items and the per-tenant rate the busiest item allows.

use clap::Parser;
use quarry_bench::capacity::{Design, run};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    #[arg(long, default_value_t = 16)]
    instances: usize,
}

/// DynamoDB on-demand, us-east-1: USD per million write request units.
const USD_PER_MILLION_WRU: f64 = 0.625;

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    for (name, design) in [("before", Design::Before), ("markers", Design::Markers)] {
        let r = run(design, args.requests, args.instances, false).await?;
        print!("{}", r.report.summary(name));
        println!(
            "  {} answers ({} cache hits) in {:.1} s through moto; ledger {} requests, {} micro-USD (answers said {}); DynamoDB writes ${:.2} per million requests",
            r.answered,
            r.cache_hits,
            r.wall.as_secs_f64(),
            r.ledger.requests,
            r.ledger.cost_micro,
            r.answered_cost.0,
            r.report.write_units_per_request * USD_PER_MILLION_WRU,
        );
    }
    Ok(())
}
