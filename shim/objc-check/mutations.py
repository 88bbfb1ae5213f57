#!/usr/bin/env python3
"""Canaries for shim/vz/havm_vz.m and shim/vz/havm_menubar.m: deliberately broken copies that the check MUST
reject. The canary set follows the source file's name (havm_menubar.m -> MENUBAR_CANARIES, names "mb-*").

  mutations.py <shim.m> <outdir>   write <outdir>/<name>.m for every canary (patterns must match once)
  mutations.py --expect <name>     print what the check must say about it: pass | fail | structure
  mutations.py --structure <file>  the structure rule clang cannot check; exit 1 when it is broken:
                                   every exported function returns through havm_guard(), and the file
                                   has exactly one @try (inside havm_guard).
"""
import os
import pathlib
import re
import sys

# (name, expectation, [(old, new), ...]). "fail" = clang must reject it; "structure" = the structure
# rule must reject it; "pass" = the unmodified control.
CANARIES = [
    ("00-control", "pass", []),
    ("01-misspelled-selector", "fail",
     [("initWithConfiguration:cfg queue:h.queue]", "initWithConfiguraton:cfg queue:h.queue]")]),
    ("02-nsstring-for-nsurl", "fail",
     [("[[VZEFIVariableStore alloc] initWithURL:url]", "[[VZEFIVariableStore alloc] initWithURL:path]")]),
    ("03-object-for-queue", "fail",
     [("initWithConfiguration:cfg queue:h.queue]", "initWithConfiguration:cfg queue:h.delegate]")]),
    ("04-id-to-uint64", "fail",
     [("cfg.memorySize = (memory.unsignedLongLongValue / (1024ull * 1024ull)) * 1024ull * 1024ull;",
       "cfg.memorySize = memory;")]),
    ("05-block-signature", "fail",
     [("[h.vm startWithCompletionHandler:^(NSError *_Nullable startError) {",
       "[h.vm startWithCompletionHandler:^(NSError *_Nullable startError, BOOL ok) {")]),
    ("06-arc-cast-without-bridge", "fail",
     [("*outHandle = (void *)CFBridgingRetain(h);", "*outHandle = (void *)h;")]),
    ("07-arc-explicit-release", "fail",
     [("            h.vm = nil;\n", "            [h.vm release];\n")]),
    ("08-retain-cycle-block-property", "fail",
     [("@property (nonatomic) BOOL observing;\n",
       "@property (nonatomic) BOOL observing;\n@property (nonatomic, copy) void (^onEvent)(void);\n"),
      ("        _usbAttached = [NSMutableDictionary dictionary];\n",
       "        _usbAttached = [NSMutableDictionary dictionary];\n        self.onEvent = ^{ [self pushEvent:@{}]; };\n")]),
    ("09-unguarded-macos15-xhci", "fail",
     [("    if (@available(macOS 15.0, *)) {\n        if (wantUsbController) {",
       "    if (YES) {\n        if (wantUsbController) {")]),
    ("10-unguarded-macos14-enum", "fail",
     [("            VZVirtualMachineState state = h.vm.state;\n",
       "            VZVirtualMachineState state = h.vm.state;\n            if (state == VZVirtualMachineStateSaving) state = VZVirtualMachineStatePaused;\n")]),
    ("11-unguarded-macos27-passthrough", "fail",
     [("        if (@available(macOS 27.0, *)) {\n"
       "            NSDictionary *want = havm_parse_object(deviceJson, &error);\n"
       "            AAUSBAccessory *accessory = want ? havm_find_accessory(want, &error) : nil;\n"
       "            if (accessory == nil) return havm_fail_error(err, errLen, error, HAVM_E_FRAMEWORK);\n"
       "            NSDictionary *ids = havm_accessory_json(accessory);\n"
       "            NSString *key = ids[@\"registryId\"];\n"
       "            return havm_on_queue(h.queue, err, errLen, ^int32_t {\n"
       "                // The passthrough device",
       "        if (YES) {\n"
       "            NSDictionary *want = havm_parse_object(deviceJson, &error);\n"
       "            AAUSBAccessory *accessory = want ? havm_find_accessory(want, &error) : nil;\n"
       "            if (accessory == nil) return havm_fail_error(err, errLen, error, HAVM_E_FRAMEWORK);\n"
       "            NSDictionary *ids = havm_accessory_json(accessory);\n"
       "            NSString *key = ids[@\"registryId\"];\n"
       "            return havm_on_queue(h.queue, err, errLen, ^int32_t {\n"
       "                // The passthrough device")]),
    ("12-nil-to-nonnull", "fail",
     [("[[VZEFIVariableStore alloc] initWithURL:url]", "[[VZEFIVariableStore alloc] initWithURL:nil]")]),
    ("13-misspelled-delegate-method", "fail",
     [("- (void)guestDidStopVirtualMachine:(VZVirtualMachine *)virtualMachine {",
       "- (void)guestDidStopVirtualMachin:(VZVirtualMachine *)virtualMachine {")]),
    ("14-misspelled-selector-on-id", "fail",
     [("cpus.unsignedIntegerValue < minCpus", "cpus.unsignedIntegrValue < minCpus")]),
    ("15-unavailable-init", "fail",
     [("VZEFIBootLoader *boot = [[VZEFIBootLoader alloc] init];",
       "VZEFIBootLoader *boot = [[VZEFIBootLoader alloc] init]; (void)[[VZVirtualMachine alloc] init];")]),
    ("16-missing-__block", "fail",
     [("    __block int32_t status = HAVM_OK;\n    dispatch_sync(queue, ^{",
       "    int32_t status = HAVM_OK;\n    dispatch_sync(queue, ^{")]),
    ("17-error-outparam-wrong-level", "fail",
     [("if (![cfg validateWithError:&validation]) {", "if (![cfg validateWithError:&error]) {")]),
    ("18-syntax-missing-bracket", "fail",
     [("[storage addObject:[[VZVirtioBlockDeviceConfiguration alloc] initWithAttachment:attachment]];",
       "[storage addObject:[[VZVirtioBlockDeviceConfiguration alloc] initWithAttachment:attachment];")]),
    ("19-guard-body-missing-return", "fail",
     [("        *outMask = mask;\n        return HAVM_OK;\n", "        *outMask = mask;\n")]),
    ("20-wrong-caching-enum-type", "fail",
     [("cachingMode:cachingMode\n", "cachingMode:syncMode\n")]),
    ("21-nil-bridge-interface-to-nonnull", "fail",
     [("[[VZBridgedNetworkDeviceAttachment alloc] initWithInterface:iface]",
       "[[VZBridgedNetworkDeviceAttachment alloc] initWithInterface:nil]")]),
    ("22-misspelled-aa-selector", "fail",
     [("registerListener:self\n                                           withMatchingCriteria:@[]",
       "registerListener:self\n                                           matchingCriteria:@[]")]),
    ("23-export-without-guard", "structure",
     [("HAVM_EXPORT int32_t havm_abi_version(char *err, uint32_t errLen) {\n    return havm_guard(err, errLen, ^int32_t {\n        return HAVM_VZ_ABI_VERSION;\n    });\n}",
       "HAVM_EXPORT int32_t havm_abi_version(char *err, uint32_t errLen) {\n    return HAVM_VZ_ABI_VERSION;\n}")]),
    ("24-second-try-outside-guard", "structure",
     [("    int fd = open(path.UTF8String, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);\n",
       "    int fd = -1;\n    @try { fd = open(path.UTF8String, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644); } @catch (NSException *e) { return nil; }\n")]),
]

# Canaries for the AppKit status item (shim/vz/havm_menubar.m).
MENUBAR_CANARIES = [
    ("mb-00-control", "pass", []),
    ("mb-01-misspelled-selector", "fail",
     [("[app nextEventMatchingMask:NSEventMaskAny", "[app nextEventMatchingMsk:NSEventMaskAny")]),
    ("mb-02-object-for-cgfloat", "fail",
     [("statusItemWithLength:NSVariableStatusItemLength]", "statusItemWithLength:@\"variable\"]")]),
    ("mb-03-integer-for-runloop-mode", "fail",
     [("inMode:NSDefaultRunLoopMode\n", "inMode:NSEventMaskAny\n")]),
    ("mb-04-nil-to-nonnull-title", "fail",
     [("[[NSMenu alloc] initWithTitle:title]", "[[NSMenu alloc] initWithTitle:nil]")]),
    ("mb-05-misspelled-action-selector", "fail",
     [("@selector(itemClicked:)", "@selector(itemClick:)")]),
    ("mb-06-cf-to-objc-without-bridge", "fail",
     [("CFDictionaryRef session = CGSessionCopyCurrentDictionary();",
       "NSDictionary *session = CGSessionCopyCurrentDictionary();")]),
    ("mb-07-object-for-control-state", "fail",
     [("NSControlStateValueOn : NSControlStateValueOff", "@YES : @NO")]),
    ("mb-08-app-method-on-status-bar", "fail",
     [("[app sendEvent:event];", "[[NSStatusBar systemStatusBar] sendEvent:event];")]),
    ("mb-09-assign-readonly-button", "fail",
     [("        NSStatusBarButton *button = item.button;\n",
       "        item.button = nil;\n        NSStatusBarButton *button = item.button;\n")]),
    ("mb-10-guard-body-missing-return", "fail",
     [("        gStatusItem = item;\n        return HAVM_OK;\n", "        gStatusItem = item;\n")]),
    ("mb-11-unguarded-macos14-api", "fail",
     [("return [NSMenuItem separatorItem];", "return [NSMenuItem sectionHeaderWithTitle:@\"-\"];")]),
    ("mb-12-string-for-activation-policy", "fail",
     [("setActivationPolicy:NSApplicationActivationPolicyAccessory]", "setActivationPolicy:@\"accessory\"]")]),
    ("mb-13-arc-explicit-release", "fail",
     [("            gStatusItem = nil;\n", "            [gStatusItem release];\n")]),
    ("mb-14-export-without-guard", "structure",
     [("HAVM_EXPORT int32_t havm_menubar_abi_version(char *err, uint32_t errLen) {\n    return havm_guard(err, errLen, ^int32_t {\n        return HAVM_MENUBAR_ABI_VERSION;\n    });\n}",
       "HAVM_EXPORT int32_t havm_menubar_abi_version(char *err, uint32_t errLen) {\n    return HAVM_MENUBAR_ABI_VERSION;\n}")]),
    ("mb-15-second-try-outside-guard", "structure",
     [("    NSMenuItem *item = [[NSMenuItem alloc] initWithTitle:title\n",
       "    @try { (void)title.length; } @catch (NSException *e) { return nil; }\n    NSMenuItem *item = [[NSMenuItem alloc] initWithTitle:title\n")]),
]

# HAVM_OBJC_CHECK_SELFTEST=1: only the control plus a harmless edit wrongly marked "fail", so the
# check must report it and exit non-zero (test/vz/objc-check.test.ts proves the harness can fail).
if os.environ.get("HAVM_OBJC_CHECK_SELFTEST") == "1":
    CANARIES = [CANARIES[0], ("99-selftest-harmless-edit", "fail",
                              [("// Error plumbing\n", "// Error plumbing (edited)\n")])]
    MENUBAR_CANARIES = [MENUBAR_CANARIES[0], ("mb-99-selftest-harmless-edit", "fail",
                                              [("// Error plumbing (the same", "// Error plumbing, edited (the same")])]


def canaries_for(source: str) -> list:
    return MENUBAR_CANARIES if os.path.basename(source) == "havm_menubar.m" else CANARIES


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def structure_errors(text: str) -> list[str]:
    errors = []
    text = strip_comments(text)
    n_try = len(re.findall(r"@try\b", text))
    if n_try != 1:
        errors.append(f"expected exactly one @try (in havm_guard), found {n_try}")
    for m in re.finditer(r"^HAVM_EXPORT\s+[^\n(]*?\b(havm_\w+)\s*\([^)]*\)\s*\{\n(.*)$", text, re.M):
        first = m.group(2).strip()
        if not first.startswith("return havm_guard("):
            errors.append(f"{m.group(1)}: the body must be `return havm_guard(...)`")
    if not re.search(r"^HAVM_EXPORT", text, re.M):
        errors.append("no exported functions found")
    return errors


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["--expect"]:
        print(next(e for n, e, _ in CANARIES + MENUBAR_CANARIES if n == args[1]))
        return 0
    if args[:1] == ["--structure"]:
        errs = structure_errors(pathlib.Path(args[1]).read_text())
        for e in errs:
            print("structure:", e, file=sys.stderr)
        return 1 if errs else 0
    src = pathlib.Path(args[0]).read_text()
    out = pathlib.Path(args[1])
    out.mkdir(parents=True, exist_ok=True)
    chosen = canaries_for(args[0])
    for name, _, edits in chosen:
        s = src
        for old, new in edits:
            n = s.count(old)
            if n != 1:
                sys.exit(f"{name}: pattern occurs {n} times: {old!r}")
            s = s.replace(old, new)
        (out / f"{name}.m").write_text(s)
    print(len(chosen), "canaries written to", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
