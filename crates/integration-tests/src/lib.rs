//! End-to-end tests live in `tests/`: they run Quarry's adapters and handlers against moto
//! server and the Bedrock emulator, started by the tests on free loopback ports.
