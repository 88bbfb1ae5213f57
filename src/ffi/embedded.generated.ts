// Default (dev checkout): no embedded native library; src/ffi/native.ts finds .build/shim/ instead.
// scripts/build.sh overwrites this file before `bun build --compile` with an import of the built library:
//   import lib from "../../.build/shim/libhavm.so" with { type: "file" };
//   export const embeddedLibrary: string | undefined = lib;
export const embeddedLibrary: string | undefined = undefined;
