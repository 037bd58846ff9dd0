//! Command line: one subcommand per job.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Coro: a broker for Choria networks.
#[derive(Debug, Parser)]
#[command(name = "coro", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode one NATS payload as it is on the wire and print one line of JSON.
    ///
    /// Exits 65 with `error: <layer>: <reason>` on stderr when the payload is not a
    /// valid Choria message, and 66 when the input cannot be read.
    Decode(DecodeArgs),
    /// Run the data adapters of a config file until SIGTERM or SIGINT, then drain.
    ///
    /// Reads adapters.toml, or a Choria broker config with plugin.choria.adapter.* keys.
    /// Exits 78 on a bad config, 69 when a server cannot be reached at start.
    Run(RunArgs),
    /// Check a config file without connecting anywhere and print its adapters.
    ///
    /// Reads adapters.toml, or a Choria broker config as `coro broker run` does (the
    /// network broker's keys too, printed as a line above the adapters).
    /// Prints every problem to stderr, one per line (`file:line:column: key: message;
    /// hint`), and exits 78; otherwise prints a table of the adapters and exits 0.
    Validate(ValidateArgs),
    /// Simulate a Choria fleet: N servers in one process, each with its own identity,
    /// facts, agents (rpcutil, discovery) and subscriptions, answering requests and
    /// publishing registration, until SIGINT or SIGTERM.
    ///
    /// Exits 0 after a clean stop, 64 for bad arguments, 69 when the server cannot be
    /// reached.
    Fleet(crate::fleet_cmd::FleetArgs),
    /// Publish a Choria RPC request; collect and print the replies unless it is an
    /// asynchronous request (--reply-to without --wait).
    ///
    /// Waiting prints a table sorted by sender and a summary. Exits 0 when every
    /// expected node replied with status 0, 1 when a reply had a non-zero status, 75 when
    /// expected nodes (or all) did not reply within --timeout, 64 for bad arguments,
    /// 65/66 for bad or unreadable credentials, 69 when the server cannot be reached.
    Rpc(Box<coro_broker::rpc::RpcArgs>),
    /// Print the replies of one request that an adapter's Kafka sink wrote (the other
    /// half of `coro rpc --reply-to`): a table sorted by sender with a summary per
    /// status code, or JSON lines.
    ///
    /// Reads every encoding the sink writes. Exits 0 when every reply has status 0, 1
    /// when one has not, 75 when fewer than --expect nodes (or none) answered, 64 for
    /// bad arguments, 69 when the brokers or the topic cannot be found.
    Replies(Box<crate::replies::RepliesArgs>),
    /// The Choria broker: `coro broker run`.
    #[command(subcommand)]
    Broker(BrokerCommand),
    /// Run everything on this machine: a network broker with JetStream, the adapters of
    /// the repo's adapters.toml, a simulated fleet, and one asynchronous RPC.
    ///
    /// Ends with a table; exits 0 only when every node's registration and reply arrived.
    Demo(crate::demo::DemoArgs),
}

/// `coro broker` subcommands.
#[derive(Debug, Subcommand)]
pub enum BrokerCommand {
    /// Run the broker of a Choria config until SIGTERM or SIGINT, like `choria broker
    /// run`: the network broker (plugin.choria.broker_network = true), the federation
    /// broker (plugin.choria.broker_federation = true) and the adapters
    /// (plugin.choria.adapters, and --adapters), with one HTTP server on
    /// plugin.choria.stats_port.
    ///
    /// Exits 0 after a clean stop, 78 on a bad config or a port in use, 69 when
    /// nats-server is missing or a server cannot be reached.
    Run(BrokerRunArgs),
}

/// Arguments of `coro broker run`.
#[derive(Debug, clap::Args)]
pub struct BrokerRunArgs {
    /// The Choria broker config.
    #[arg(long, short, default_value = "/etc/choria/broker.conf")]
    pub config: PathBuf,
    /// An adapters.toml whose adapters run too (its [http] listen is used when the
    /// config sets no plugin.choria.stats_port).
    #[arg(long, value_name = "ADAPTERS_TOML")]
    pub adapters: Option<PathBuf>,
}

/// Arguments of `coro validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The config file: `*.toml` as adapters.toml, anything else as a Choria config.
    #[arg(default_value = "adapters.toml")]
    pub config: PathBuf,
    /// Also connect and check the servers: ingest streams and consumers (explicit acks),
    /// that a stream captures every JetStream sink's subject, and that every Kafka
    /// sink's brokers answer and its topic exists (or will be created on first write).
    #[arg(long)]
    pub online: bool,
}

/// Arguments of `coro run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The config file.
    #[arg(long, short, default_value = "adapters.toml")]
    pub config: PathBuf,
}

/// Output of `coro decode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecodeOutput {
    /// Coro's Record: subject, version, kind, sender, request id, agent, time, body.
    Record,
    /// The document Choria's Go adapter would publish for this message.
    ChoriaStreams,
}

/// Arguments of `coro decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// What to print.
    #[arg(long = "as", value_enum, default_value_t = DecodeOutput::Record)]
    pub output: DecodeOutput,
    /// The NATS subject the payload arrived on (goes into the Record).
    #[arg(long, default_value = "")]
    pub subject: String,
    /// Largest payload accepted, in bytes.
    #[arg(long, default_value_t = coro_core::protocol::Limits::DEFAULT.max_payload)]
    pub max_payload: usize,
    /// Also check signatures and hashes; fail with exit 65 when they do not hold.
    #[arg(long)]
    pub verify: bool,
    /// The org issuer's ed25519 public key, as hex or a file holding hex, for v2 tokens.
    #[arg(long, value_name = "HEX|FILE", requires = "verify")]
    pub issuer: Option<String>,
    /// The payload file; `-` or nothing reads standard input.
    pub file: Option<PathBuf>,
}
