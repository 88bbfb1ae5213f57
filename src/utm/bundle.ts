// Reading a UTM bundle (`Name.utm/`): its config.plist and the facts about the files it names.
// Everything that touches the bundle's files is here; what to do with them is decided in plan.ts.
import { readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { parse, type PlistValue } from "plist";
import { inputError, errnoCode } from "../util/errors.ts";
import { detectFormat, logicalSize, readImageHeader } from "./format.ts";
import type { FileFacts } from "./plan.ts";

export interface UtmBundle {
  /** The bundle directory as given. */
  path: string;
  /** `<bundle>/config.plist`. */
  configPath: string;
  /** `<bundle>/Data`: where drives and efi_vars.fd live in ConfigurationVersion 4 bundles. */
  dataDir: string;
  plist: PlistValue;
}

const NOT_A_BUNDLE_HINT = "Pass the VM's .utm folder (in UTM: right-click the VM > Show in Finder), e.g. ~/Library/Containers/com.utmapp.UTM/Data/Documents/Home\\ Assistant.utm";

/** Read and parse `<path>/config.plist`. Refuses (exit 2) anything that is not a readable bundle. */
export function readUtmBundle(path: string): UtmBundle {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (e) {
    if (errnoCode(e) === "ENOENT") throw inputError(`${path} does not exist`, NOT_A_BUNDLE_HINT, "utm.missing");
    throw inputError(`cannot read ${path}: ${(e as Error).message}`, NOT_A_BUNDLE_HINT, "utm.unreadable");
  }
  if (!isDir) throw inputError(`${path} is not a UTM bundle (a .utm bundle is a folder)`, NOT_A_BUNDLE_HINT, "utm.not-bundle");
  const configPath = join(path, "config.plist");
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(configPath);
  } catch (e) {
    if (errnoCode(e) === "ENOENT") {
      throw inputError(`${path} is not a UTM bundle: it has no config.plist`, NOT_A_BUNDLE_HINT, "utm.not-bundle");
    }
    throw inputError(`cannot read ${configPath}: ${(e as Error).message}`, "Check the file's permissions.", "utm.unreadable");
  }
  return { path, configPath, dataDir: join(path, "Data"), plist: parsePlistFile(configPath, bytes) };
}

/** Parse XML (UTM's format) or binary (after a `plutil -convert binary1`) property lists. */
export function parsePlistFile(file: string, bytes: Uint8Array): PlistValue {
  const isBinary = bytes.length >= 6 && String.fromCharCode(...bytes.subarray(0, 6)) === "bplist";
  const malformed = (detail: string) =>
    inputError(
      `${file} is not a valid property list: ${detail}`,
      `The bundle may be damaged or half-copied. Open the VM once in UTM (it rewrites config.plist), or check the file with: plutil -lint ${JSON.stringify(file)}`,
      "utm.plist",
    );
  // xmldom reports parse errors on console.error before plist throws; the thrown error is what the
  // user needs, so keep the console quiet while parsing.
  const consoleError = console.error;
  console.error = () => {};
  let value: PlistValue;
  try {
    value = isBinary ? parse(bytes) : parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw malformed(firstLine((e as Error).message));
  } finally {
    console.error = consoleError;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value) || value instanceof Uint8Array || value instanceof Date) {
    throw malformed("the top level is not a dictionary");
  }
  return value;
}

function firstLine(s: string): string {
  return s.split("\n")[0]!.trim();
}

/** Stat and sniff each named file under Data/ (names come from plan.ts `referencedFiles`). */
export function gatherFileFacts(bundle: UtmBundle, names: readonly string[]): Map<string, FileFacts> {
  const facts = new Map<string, FileFacts>();
  for (const name of names) {
    // ImageName is a bare file name in UTM; never follow one that climbs out of the bundle.
    if (name !== basename(name) || name === "." || name === "..") continue;
    const file = join(bundle.dataDir, name);
    try {
      const st = statSync(file);
      if (!st.isFile()) continue;
      const header = readImageHeader(file);
      const format = detectFormat(header);
      facts.set(name, { path: file, fileSize: st.size, allocated: st.blocks * 512, format, logicalSize: logicalSize(format, header, st.size) });
    } catch (e) {
      if (errnoCode(e) === "ENOENT") continue;
      throw inputError(`cannot read ${file}: ${(e as Error).message}`, "Check the file's permissions.", "utm.unreadable");
    }
  }
  return facts;
}
