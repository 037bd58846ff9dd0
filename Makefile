# Coro: the two commands that matter are `make demo` and `make test`.
# Both install what is missing first (idempotently) and share one cargo target dir.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: demo test setup fmt lint unit bench fuzz clean

## demo: build coro and run `coro demo`: a network broker with JetStream, the adapters of
## adapters.toml, 1000 simulated Choria servers and one asynchronous RPC, ending in a table
demo: setup
	$(CARGO) build -p coro-broker --locked
	"$${CARGO_TARGET_DIR:-target}/debug/coro" demo

## test: format check, clippy with -D warnings, and every test
test: setup fmt lint unit

## setup: install the toolchain components and tools the project needs
setup:
	scripts/setup.sh
	scripts/install-nats.sh >/dev/null

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Real servers (nats-server with JetStream) start once for the whole run, on loopback.
unit:
	scripts/with-servers.sh scripts/test-summary.sh $(CARGO) test --workspace --locked --no-fail-fast

## bench: the benchmarks (ratios against the raw parser, client and server in one run)
bench: setup
	$(CARGO) bench --bench decode --locked
	$(CARGO) bench --bench plugin --locked
	$(CARGO) build --release -p coro-broker --locked
	scripts/with-servers.sh $(CARGO) bench --bench adapter --locked
	# Starts its own tansu and needs no other server: the others (a JVM among them) would
	# share the 2 cores with a latency-bound measurement.
	CORO_KAFKA_SERVER="$$(scripts/install-kafka.sh)" $(CARGO) bench --bench kafka --locked
	scripts/with-servers.sh $(CARGO) bench --bench fleet --locked
	scripts/with-servers.sh $(CARGO) bench --bench elasticsearch --locked
	scripts/with-servers.sh $(CARGO) bench --bench federation --locked
	scripts/with-servers.sh $(CARGO) bench --bench kinesis_pubsub --locked

## fuzz: run the decoder fuzz target (FUZZ_SECONDS=600 by default; not part of `make test`)
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

clean:
	$(CARGO) clean
