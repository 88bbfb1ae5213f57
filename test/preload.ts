// Loaded before every test file (bunfig.toml). bunfig's [test] timeout is ignored, so set it here.
import { setDefaultTimeout } from "bun:test";
setDefaultTimeout(60_000);
// Tests never talk to the internet: fail loudly if something tries a default endpoint.
process.env.HAVM_TEST = "1";
