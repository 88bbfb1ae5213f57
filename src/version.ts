export const HAVM_VERSION = "0.1.0";
/** Replaced at build time by scripts/build.sh (bun build --define). */
declare const HAVM_COMMIT_DEFINE: string | undefined;
export const HAVM_COMMIT: string = typeof HAVM_COMMIT_DEFINE === "string" ? HAVM_COMMIT_DEFINE : "dev";
