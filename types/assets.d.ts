// Embedded native libraries (bun build --compile with { type: "file" }): the import is a path.
declare module "*.dylib" {
  const path: string;
  export default path;
}
declare module "*.so" {
  const path: string;
  export default path;
}
