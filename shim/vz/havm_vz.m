// havm_vz.m — the flat C ABI of shim/havm.h over Apple's Virtualization.framework.
//
// Rules this file keeps (see vz-facts.md):
//  - Every exported function returns through havm_guard(), the ONLY @try/@catch: an Objective-C
//    exception must never cross the FFI boundary (it would abort the Bun process).
//  - Each VM has its own serial dispatch queue (initWithConfiguration:queue:); every VM method,
//    property read and runtime device call happens on it. Bun's main thread runs no CFRunLoop, so
//    nothing is ever sent to the main queue.
//  - Nothing calls into JavaScript: state changes (KVO), delegate callbacks and completions append
//    NDJSON lines to a bounded, os_unfair_lock-guarded queue that JS drains (havm_vm_next_event).
//  - VZVirtualMachine.delegate is weak: HavmVM holds the delegate strongly.
//  - APIs newer than the deployment target (macOS 13) are behind @available.
//
// Built on macOS by scripts/build-shim-macos.sh; compile-checked on Linux by shim/objc-check/check.sh.
#import <Foundation/Foundation.h>
#import <Security/Security.h>
#import <Virtualization/Virtualization.h>
#import <dispatch/dispatch.h>
#import <os/lock.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "havm.h"

// AccessoryAccess (USB passthrough) exists only in the macOS 27 SDK and later.
#if __has_include(<AccessoryAccess/AccessoryAccess.h>)
#import <AccessoryAccess/AccessoryAccess.h>
#define HAVM_HAVE_ACCESSORY_ACCESS 1
#else
#define HAVM_HAVE_ACCESSORY_ACCESS 0
#endif

#define HAVM_EXPORT HAVM_API

static NSString *const kEntVirtualization = @"com.apple.security.virtualization";
static NSString *const kEntUSB = @"com.apple.developer.accessory-access.usb";
static NSString *const kEntNetworking = @"com.apple.vm.networking";
static NSString *const kHavmErrorDomain = @"havm";
// Longest free-text field copied into an event; JSON escaping can grow it ~6x, still < HAVM_EVENT_MAX.
static const NSUInteger kEventTextMax = 512;

// ---------------------------------------------------------------------------------------------
// Error plumbing

static void havm_copy_cstr(char *dst, uint32_t len, NSString *msg) {
    if (dst == NULL || len == 0) return;
    const char *utf8 = msg.UTF8String ?: "unknown error";
    size_t n = strlen(utf8);
    if (n >= len) n = len - 1;
    memcpy(dst, utf8, n);
    dst[n] = '\0';
}

static int32_t havm_fail(char *err, uint32_t errLen, int32_t code, NSString *msg) {
    havm_copy_cstr(err, errLen, msg);
    return code;
}

static NSError *havm_error(int32_t code, NSString *msg) {
    return [NSError errorWithDomain:kHavmErrorDomain code:code userInfo:@{NSLocalizedDescriptionKey: msg}];
}

// Maps any NSError to (status, message): our own errors keep their code, framework errors are
// reported verbatim as HAVM_E_FRAMEWORK (or the fallback code the caller chose).
static int32_t havm_fail_error(char *err, uint32_t errLen, NSError *_Nullable error, int32_t fallback) {
    if (error == nil) return havm_fail(err, errLen, fallback, @"unknown error");
    int32_t code = [error.domain isEqualToString:kHavmErrorDomain] ? (int32_t)error.code : fallback;
    return havm_fail(err, errLen, code, error.localizedDescription);
}

typedef int32_t (^HavmBody)(void);

// The one place that catches Objective-C exceptions. Every exported function returns through it.
static int32_t havm_guard(char *err, uint32_t errLen, NS_NOESCAPE HavmBody body) {
    @autoreleasepool {
        @try {
            return body();
        } @catch (NSException *e) {
            return havm_fail(err, errLen, HAVM_E_EXCEPTION,
                             [NSString stringWithFormat:@"%@: %@", e.name, e.reason ?: @"(no reason)"]);
        } @catch (id other) {
            return havm_fail(err, errLen, HAVM_E_EXCEPTION, @"non-NSException Objective-C exception");
        }
    }
}

// Runs body synchronously on a VM's serial queue, guarded there as well: an exception raised on the
// queue must not unwind through libdispatch. Never called from the queue itself (that would deadlock):
// only exported functions, which run on the caller's thread, use it.
static int32_t havm_on_queue(dispatch_queue_t queue, char *err, uint32_t errLen, NS_NOESCAPE HavmBody body) {
    __block int32_t status = HAVM_OK;
    dispatch_sync(queue, ^{
        status = havm_guard(err, errLen, body);
    });
    return status;
}

// ---------------------------------------------------------------------------------------------
// JSON field access with type checks (bad input is an error, never an exception)

static id _Nullable havm_field(NSDictionary *obj, NSString *key, Class cls, BOOL required, NSError **error) {
    id v = obj[key];
    if (v == nil || v == [NSNull null]) {
        if (required && error) *error = havm_error(HAVM_E_INVALID_ARGUMENT, [NSString stringWithFormat:@"spec: missing \"%@\"", key]);
        return nil;
    }
    if (![v isKindOfClass:cls]) {
        if (error) *error = havm_error(HAVM_E_INVALID_ARGUMENT, [NSString stringWithFormat:@"spec: \"%@\" has the wrong type", key]);
        return nil;
    }
    return v;
}

static NSDictionary *_Nullable havm_parse_object(const char *_Nullable json, NSError **error) {
    if (json == NULL) {
        *error = havm_error(HAVM_E_INVALID_ARGUMENT, @"JSON argument is NULL");
        return nil;
    }
    NSData *data = [NSData dataWithBytes:json length:strlen(json)];
    NSError *parseError = nil;
    id obj = [NSJSONSerialization JSONObjectWithData:data options:0 error:&parseError];
    if (![obj isKindOfClass:[NSDictionary class]]) {
        *error = havm_error(HAVM_E_INVALID_ARGUMENT,
                            [NSString stringWithFormat:@"JSON argument is not an object: %@",
                                                       parseError.localizedDescription ?: @"wrong type"]);
        return nil;
    }
    return obj;
}

static NSString *havm_clip(NSString *_Nullable s) {
    if (s == nil) return @"";
    return s.length > kEventTextMax ? [s substringToIndex:kEventTextMax] : s;
}

// ---------------------------------------------------------------------------------------------
// Entitlements of the running executable (the dylib inherits the main binary's)

static BOOL havm_has_entitlement(NSString *name) {
    SecTaskRef task = SecTaskCreateFromSelf(kCFAllocatorDefault);
    if (task == NULL) return NO;
    CFTypeRef value = SecTaskCopyValueForEntitlement(task, (__bridge CFStringRef)name, NULL);
    CFRelease(task);
    id obj = CFBridgingRelease(value);
    return [obj isKindOfClass:[NSNumber class]] && [(NSNumber *)obj boolValue];
}

// ---------------------------------------------------------------------------------------------
// Per-VM state

@class HavmVM;

// Delegate methods are redeclared here so a misspelt selector trips -Wincomplete-implementation.
@interface HavmDelegate : NSObject <VZVirtualMachineDelegate>
@property (nonatomic, weak) HavmVM *owner;
- (void)guestDidStopVirtualMachine:(VZVirtualMachine *)virtualMachine;
- (void)virtualMachine:(VZVirtualMachine *)virtualMachine didStopWithError:(NSError *)error;
- (void)virtualMachine:(VZVirtualMachine *)virtualMachine
                 networkDevice:(VZNetworkDevice *)networkDevice
    attachmentWasDisconnectedWithError:(NSError *)error;
@end

@interface HavmVM : NSObject
@property (nonatomic, readonly) dispatch_queue_t queue;
@property (nonatomic, strong) VZVirtualMachine *vm;
@property (nonatomic, readonly) HavmDelegate *delegate;
@property (nonatomic) BOOL observing;
// USB passthrough devices attached at run time, keyed by registry id (only touched on the queue).
@property (nonatomic, readonly) NSMutableDictionary<NSString *, id> *usbAttached;
- (void)pushEvent:(NSDictionary<NSString *, id> *)event;
- (int32_t)drainInto:(char *)buf length:(uint32_t)len;
@end

static void *kHavmStateContext = &kHavmStateContext;

@implementation HavmDelegate
- (void)guestDidStopVirtualMachine:(VZVirtualMachine *)virtualMachine {
    [self.owner pushEvent:@{@"type": @"guest-stopped"}];
}
- (void)virtualMachine:(VZVirtualMachine *)virtualMachine didStopWithError:(NSError *)error {
    [self.owner pushEvent:@{@"type": @"stopped-with-error", @"message": havm_clip(error.localizedDescription)}];
}
- (void)virtualMachine:(VZVirtualMachine *)virtualMachine
                 networkDevice:(VZNetworkDevice *)networkDevice
    attachmentWasDisconnectedWithError:(NSError *)error {
    [self.owner pushEvent:@{@"type": @"network-disconnected", @"message": havm_clip(error.localizedDescription)}];
}
@end

@implementation HavmVM {
    os_unfair_lock _lock;
    NSMutableArray<NSData *> *_events;  // guarded by _lock
    uint64_t _dropped;                  // guarded by _lock
}

- (instancetype)init {
    if ((self = [super init])) {
        _lock = OS_UNFAIR_LOCK_INIT;
        _events = [NSMutableArray array];
        _queue = dispatch_queue_create("dev.havm.vm", DISPATCH_QUEUE_SERIAL);
        _delegate = [HavmDelegate new];
        _delegate.owner = self;
        _usbAttached = [NSMutableDictionary dictionary];
    }
    return self;
}

// Called from the VM queue (KVO, delegate, completions) and from the caller's thread.
- (void)pushEvent:(NSDictionary<NSString *, id> *)event {
    NSData *line = [NSJSONSerialization dataWithJSONObject:event options:0 error:NULL];
    if (line == nil || line.length + 1 > HAVM_EVENT_MAX) {
        line = [NSJSONSerialization dataWithJSONObject:@{@"type": @"log", @"level": @"warning",
                                                         @"message": @"event could not be encoded"}
                                               options:0 error:NULL];
    }
    if (line == nil) return;
    os_unfair_lock_lock(&_lock);
    if (_events.count >= HAVM_EVENT_QUEUE_CAP) {
        [_events removeObjectAtIndex:0];
        _dropped += 1;
    }
    [_events addObject:line];
    os_unfair_lock_unlock(&_lock);
}

- (int32_t)drainInto:(char *)buf length:(uint32_t)len {
    uint32_t used = 0;
    os_unfair_lock_lock(&_lock);
    if (_dropped > 0) {
        int n = snprintf(buf, len, "{\"type\":\"dropped\",\"count\":%llu}\n", (unsigned long long)_dropped);
        if (n > 0 && (uint32_t)n < len) {
            used = (uint32_t)n;
            _dropped = 0;
        }
    }
    while (_events.count > 0) {
        NSData *line = _events.firstObject;
        if (used + line.length + 1 > len) break;
        memcpy(buf + used, line.bytes, line.length);
        used += (uint32_t)line.length;
        buf[used++] = '\n';
        [_events removeObjectAtIndex:0];
    }
    os_unfair_lock_unlock(&_lock);
    return (int32_t)used;
}

- (void)observeValueForKeyPath:(NSString *)keyPath
                      ofObject:(id)object
                        change:(NSDictionary<NSKeyValueChangeKey, id> *)change
                       context:(void *)context {
    if (context != kHavmStateContext) {
        [super observeValueForKeyPath:keyPath ofObject:object change:change context:context];
        return;
    }
    NSNumber *state = change[NSKeyValueChangeNewKey];
    if ([state isKindOfClass:[NSNumber class]]) [self pushEvent:@{@"type": @"state", @"state": state}];
}
@end

static HavmVM *_Nullable havm_vm_from(void *_Nullable handle, NSError **error) {
    if (handle == NULL) {
        *error = havm_error(HAVM_E_INVALID_ARGUMENT, @"VM handle is NULL");
        return nil;
    }
    return (__bridge HavmVM *)handle;
}

// ---------------------------------------------------------------------------------------------
// Configuration from the spec JSON (src/vm/vz/translate.ts writes it)

API_AVAILABLE(macos(13.0))
static VZEFIVariableStore *_Nullable havm_variable_store(NSDictionary *efi, NSError **error) {
    NSString *path = havm_field(efi, @"path", [NSString class], YES, error);
    NSNumber *create = havm_field(efi, @"create", [NSNumber class], YES, error);
    if (path == nil || create == nil) return nil;
    NSURL *url = [NSURL fileURLWithPath:path];
    BOOL exists = [[NSFileManager defaultManager] fileExistsAtPath:path];
    // Never overwrite an existing store: it is part of the VM's identity.
    if (create.boolValue && !exists) {
        NSError *vzError = nil;
        VZEFIVariableStore *store = [[VZEFIVariableStore alloc] initCreatingVariableStoreAtURL:url options:0 error:&vzError];
        if (store == nil) {
            *error = havm_error(HAVM_E_IO, [NSString stringWithFormat:@"cannot create the EFI variable store %@: %@", path,
                                                                      vzError.localizedDescription ?: @"unknown error"]);
        }
        return store;
    }
    if (!exists) {
        *error = havm_error(HAVM_E_IO, [NSString stringWithFormat:@"the EFI variable store %@ is missing", path]);
        return nil;
    }
    return [[VZEFIVariableStore alloc] initWithURL:url];
}

API_AVAILABLE(macos(13.0))
static VZGenericMachineIdentifier *_Nullable havm_machine_identifier(NSDictionary *spec, NSError **error) {
    NSDictionary *mid = havm_field(spec, @"machineIdentifier", [NSDictionary class], YES, error);
    if (mid == nil) return nil;
    NSString *b64 = havm_field(mid, @"dataBase64", [NSString class], YES, error);
    NSString *path = havm_field(mid, @"path", [NSString class], NO, error) ?: @"(machine identifier)";
    if (b64 == nil) return nil;
    NSData *data = [[NSData alloc] initWithBase64EncodedString:b64 options:0];
    VZGenericMachineIdentifier *identifier = data ? [[VZGenericMachineIdentifier alloc] initWithDataRepresentation:data] : nil;
    if (identifier == nil) {
        *error = havm_error(HAVM_E_INVALID_ARGUMENT,
                            [NSString stringWithFormat:@"%@ is not a valid VZGenericMachineIdentifier", path]);
    }
    return identifier;
}

API_AVAILABLE(macos(13.0))
static VZDiskImageStorageDeviceAttachment *_Nullable havm_disk_attachment(NSDictionary *disk, NSError **error) {
    NSString *path = havm_field(disk, @"path", [NSString class], YES, error);
    NSNumber *readOnly = havm_field(disk, @"readOnly", [NSNumber class], YES, error);
    NSString *caching = havm_field(disk, @"caching", [NSString class], YES, error);
    NSString *sync = havm_field(disk, @"sync", [NSString class], YES, error);
    if (path == nil || readOnly == nil || caching == nil || sync == nil) return nil;
    VZDiskImageCachingMode cachingMode;
    if ([caching isEqualToString:@"cached"]) cachingMode = VZDiskImageCachingModeCached;
    else if ([caching isEqualToString:@"uncached"]) cachingMode = VZDiskImageCachingModeUncached;
    else {
        *error = havm_error(HAVM_E_INVALID_ARGUMENT, [NSString stringWithFormat:@"disk %@: unknown caching \"%@\"", path, caching]);
        return nil;
    }
    VZDiskImageSynchronizationMode syncMode;
    if ([sync isEqualToString:@"full"]) syncMode = VZDiskImageSynchronizationModeFull;
    else if ([sync isEqualToString:@"fsync"]) syncMode = VZDiskImageSynchronizationModeFsync;
    else {
        *error = havm_error(HAVM_E_INVALID_ARGUMENT, [NSString stringWithFormat:@"disk %@: unknown sync \"%@\"", path, sync]);
        return nil;
    }
    NSError *vzError = nil;
    VZDiskImageStorageDeviceAttachment *attachment =
        [[VZDiskImageStorageDeviceAttachment alloc] initWithURL:[NSURL fileURLWithPath:path]
                                                       readOnly:readOnly.boolValue
                                                    cachingMode:cachingMode
                                            synchronizationMode:syncMode
                                                          error:&vzError];
    if (attachment == nil) {
        *error = havm_error(HAVM_E_IO, [NSString stringWithFormat:@"disk %@: %@", path,
                                                                  vzError.localizedDescription ?: @"cannot attach"]);
    }
    return attachment;
}

API_AVAILABLE(macos(13.0))
static VZNetworkDeviceAttachment *_Nullable havm_network_attachment(NSDictionary *net, NSError **error) {
    NSString *mode = havm_field(net, @"mode", [NSString class], YES, error);
    if (mode == nil) return nil;
    if ([mode isEqualToString:@"nat"]) return [[VZNATNetworkDeviceAttachment alloc] init];
    if (![mode isEqualToString:@"bridge"]) {
        *error = havm_error(HAVM_E_INVALID_ARGUMENT, [NSString stringWithFormat:@"unknown network mode \"%@\"", mode]);
        return nil;
    }
    // Without the restricted entitlement the framework refuses bridging: say which build can do it.
    if (!havm_has_entitlement(kEntNetworking)) {
        *error = havm_error(HAVM_E_ENTITLEMENT,
                            @"bridged networking needs the com.apple.vm.networking entitlement, which only a tier-3 build "
                            @"(signed with a provisioning profile) carries; this build is tier 1/2: use network.type: nat");
        return nil;
    }
    NSString *name = havm_field(net, @"interface", [NSString class], YES, error);
    if (name == nil) return nil;
    NSMutableArray<NSString *> *known = [NSMutableArray array];
    for (VZBridgedNetworkInterface *iface in VZBridgedNetworkInterface.networkInterfaces) {
        if ([iface.identifier isEqualToString:name]) return [[VZBridgedNetworkDeviceAttachment alloc] initWithInterface:iface];
        [known addObject:iface.identifier];
    }
    *error = havm_error(HAVM_E_NOT_FOUND, [NSString stringWithFormat:@"network interface %@ cannot be bridged (bridgeable: %@)", name,
                                                                     known.count ? [known componentsJoinedByString:@", "] : @"none"]);
    return nil;
}

API_AVAILABLE(macos(13.0))
static VZSerialPortConfiguration *_Nullable havm_serial_console(NSString *path, NSError **error) {
    int fd = open(path.UTF8String, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        *error = havm_error(HAVM_E_IO, [NSString stringWithFormat:@"cannot open the serial log %@: %s", path, strerror(errno)]);
        return nil;
    }
    NSFileHandle *log = [[NSFileHandle alloc] initWithFileDescriptor:fd closeOnDealloc:YES];
    VZVirtioConsoleDeviceSerialPortConfiguration *console = [[VZVirtioConsoleDeviceSerialPortConfiguration alloc] init];
    console.attachment = [[VZFileHandleSerialPortAttachment alloc] initWithFileHandleForReading:nil fileHandleForWriting:log];
    return console;
}

API_AVAILABLE(macos(13.0))
static VZVirtualMachineConfiguration *_Nullable havm_build_config(NSDictionary *spec, NSError **error) {
    NSNumber *version = havm_field(spec, @"version", [NSNumber class], YES, error);
    if (version == nil) return nil;
    if (version.intValue != HAVM_VZ_ABI_VERSION) {
        *error = havm_error(HAVM_E_INVALID_ARGUMENT, [NSString stringWithFormat:@"spec version %@, library expects %d", version, HAVM_VZ_ABI_VERSION]);
        return nil;
    }
    NSNumber *cpus = havm_field(spec, @"cpus", [NSNumber class], YES, error);
    NSNumber *memory = havm_field(spec, @"memoryBytes", [NSNumber class], YES, error);
    NSDictionary *efi = havm_field(spec, @"efiVariableStore", [NSDictionary class], YES, error);
    NSArray *disks = havm_field(spec, @"disks", [NSArray class], YES, error);
    NSDictionary *net = havm_field(spec, @"network", [NSDictionary class], YES, error);
    NSString *serialLog = havm_field(spec, @"serialLogPath", [NSString class], YES, error);
    if (cpus == nil || memory == nil || efi == nil || disks == nil || net == nil || serialLog == nil) return nil;
    BOOL entropy = [havm_field(spec, @"entropy", [NSNumber class], NO, error) boolValue];
    BOOL balloon = [havm_field(spec, @"balloon", [NSNumber class], NO, error) boolValue];
    BOOL wantUsbController = [havm_field(spec, @"usbController", [NSNumber class], NO, error) boolValue];

    VZVirtualMachineConfiguration *cfg = [[VZVirtualMachineConfiguration alloc] init];
    NSUInteger minCpus = VZVirtualMachineConfiguration.minimumAllowedCPUCount;
    NSUInteger maxCpus = VZVirtualMachineConfiguration.maximumAllowedCPUCount;
    if (cpus.unsignedIntegerValue < minCpus || cpus.unsignedIntegerValue > maxCpus) {
        *error = havm_error(HAVM_E_INVALID_ARGUMENT, [NSString stringWithFormat:@"%@ CPUs is outside %lu..%lu", cpus,
                                                                               (unsigned long)minCpus, (unsigned long)maxCpus]);
        return nil;
    }
    cfg.CPUCount = cpus.unsignedIntegerValue;
    // The framework wants a multiple of 1 MiB.
    cfg.memorySize = (memory.unsignedLongLongValue / (1024ull * 1024ull)) * 1024ull * 1024ull;

    VZEFIVariableStore *store = havm_variable_store(efi, error);
    if (store == nil) return nil;
    VZEFIBootLoader *boot = [[VZEFIBootLoader alloc] init];
    boot.variableStore = store;
    cfg.bootLoader = boot;

    VZGenericMachineIdentifier *identifier = havm_machine_identifier(spec, error);
    if (identifier == nil) return nil;
    VZGenericPlatformConfiguration *platform = [[VZGenericPlatformConfiguration alloc] init];
    platform.machineIdentifier = identifier;
    cfg.platform = platform;

    NSMutableArray<VZStorageDeviceConfiguration *> *storage = [NSMutableArray array];
    NSMutableArray<VZUSBMassStorageDeviceConfiguration *> *usbStorage = [NSMutableArray array];
    for (id item in disks) {
        if (![item isKindOfClass:[NSDictionary class]]) {
            *error = havm_error(HAVM_E_INVALID_ARGUMENT, @"spec: disks[] must hold objects");
            return nil;
        }
        NSString *bus = havm_field(item, @"bus", [NSString class], YES, error);
        if (bus == nil) return nil;
        VZDiskImageStorageDeviceAttachment *attachment = havm_disk_attachment(item, error);
        if (attachment == nil) return nil;
        if ([bus isEqualToString:@"virtio"]) {
            [storage addObject:[[VZVirtioBlockDeviceConfiguration alloc] initWithAttachment:attachment]];
        } else if ([bus isEqualToString:@"usb"]) {
            [usbStorage addObject:[[VZUSBMassStorageDeviceConfiguration alloc] initWithAttachment:attachment]];
        } else {
            *error = havm_error(HAVM_E_INVALID_ARGUMENT, [NSString stringWithFormat:@"spec: unknown disk bus \"%@\"", bus]);
            return nil;
        }
    }

    VZNetworkDeviceAttachment *netAttachment = havm_network_attachment(net, error);
    if (netAttachment == nil) return nil;
    NSString *macString = havm_field(net, @"mac", [NSString class], YES, error);
    if (macString == nil) return nil;
    VZMACAddress *mac = [[VZMACAddress alloc] initWithString:macString];
    if (mac == nil) {
        *error = havm_error(HAVM_E_INVALID_ARGUMENT, [NSString stringWithFormat:@"\"%@\" is not a MAC address", macString]);
        return nil;
    }
    VZVirtioNetworkDeviceConfiguration *nic = [[VZVirtioNetworkDeviceConfiguration alloc] init];
    nic.MACAddress = mac;
    nic.attachment = netAttachment;
    cfg.networkDevices = @[nic];

    VZSerialPortConfiguration *console = havm_serial_console(serialLog, error);
    if (console == nil) return nil;
    cfg.serialPorts = @[console];
    if (entropy) cfg.entropyDevices = @[[[VZVirtioEntropyDeviceConfiguration alloc] init]];
    if (balloon) cfg.memoryBalloonDevices = @[[[VZVirtioTraditionalMemoryBalloonDeviceConfiguration alloc] init]];

    // macOS 15 has an XHCI controller (needed for USB hot-plug); the CONFIG stick hangs off it.
    // On 13/14 USB mass storage is a plain storage device.
    if (@available(macOS 15.0, *)) {
        if (wantUsbController) {
            VZXHCIControllerConfiguration *xhci = [[VZXHCIControllerConfiguration alloc] init];
            NSMutableArray<id<VZUSBDeviceConfiguration>> *usbDevices = [NSMutableArray array];
            for (VZUSBMassStorageDeviceConfiguration *dev in usbStorage) [usbDevices addObject:dev];
            xhci.usbDevices = usbDevices;
            cfg.usbControllers = @[xhci];
        } else {
            [storage addObjectsFromArray:usbStorage];
        }
    } else {
        [storage addObjectsFromArray:usbStorage];
    }
    cfg.storageDevices = storage;

    NSError *validation = nil;
    if (![cfg validateWithError:&validation]) {
        // Reported verbatim: the framework's sentence is the most precise thing we have.
        *error = havm_error(HAVM_E_VALIDATION, validation.localizedDescription ?: @"configuration is invalid");
        return nil;
    }
    return cfg;
}

static NSError *havm_needs_macos13(void) {
    return havm_error(HAVM_E_UNSUPPORTED, @"havm's Virtualization.framework backend needs macOS 13 or newer");
}

// ---------------------------------------------------------------------------------------------
// USB accessories (macOS 27, AccessoryAccess): a process-wide listener keeps the accessories the
// user assigned to havm; attach/detach wrap them in VZUSBPassthroughDevice on the VM queue.

#if HAVM_HAVE_ACCESSORY_ACCESS
API_AVAILABLE(macos(27.0))
@interface HavmAccessoryWatcher : NSObject <AAUSBAccessoryListener>
- (void)usbAccessoryDidConnect:(AAUSBAccessory *)usbAccessory;
- (void)usbAccessoryDidDisconnect:(AAUSBAccessory *)usbAccessory;
- (nullable NSArray<AAUSBAccessory *> *)snapshotWithError:(NSError **)error;
@end

API_AVAILABLE(macos(27.0))
@implementation HavmAccessoryWatcher {
    os_unfair_lock _lock;
    NSMutableDictionary<NSNumber *, AAUSBAccessory *> *_connected;  // guarded by _lock
    dispatch_semaphore_t _registered;
    NSError *_registerError;
}

- (instancetype)init {
    if ((self = [super init])) {
        _lock = OS_UNFAIR_LOCK_INIT;
        _connected = [NSMutableDictionary dictionary];
        _registered = dispatch_semaphore_create(0);
        // Empty criteria: every accessory the user assigned to this app.
        [[AAUSBAccessoryManager sharedManager] registerListener:self
                                           withMatchingCriteria:@[]
                                              completionHandler:^(NSArray<AAUSBAccessory *> *accessories, NSError *_Nullable error) {
            os_unfair_lock_lock(&self->_lock);
            for (AAUSBAccessory *a in accessories) self->_connected[@(a.registryID)] = a;
            self->_registerError = error;
            os_unfair_lock_unlock(&self->_lock);
            dispatch_semaphore_signal(self->_registered);
        }];
    }
    return self;
}

- (void)usbAccessoryDidConnect:(AAUSBAccessory *)usbAccessory {
    os_unfair_lock_lock(&_lock);
    _connected[@(usbAccessory.registryID)] = usbAccessory;
    os_unfair_lock_unlock(&_lock);
}

- (void)usbAccessoryDidDisconnect:(AAUSBAccessory *)usbAccessory {
    os_unfair_lock_lock(&_lock);
    [_connected removeObjectForKey:@(usbAccessory.registryID)];
    os_unfair_lock_unlock(&_lock);
}

- (NSArray<AAUSBAccessory *> *)snapshotWithError:(NSError **)error {
    if (dispatch_semaphore_wait(_registered, dispatch_time(DISPATCH_TIME_NOW, 5 * NSEC_PER_SEC)) != 0) {
        *error = havm_error(HAVM_E_FRAMEWORK, @"AccessoryAccess did not answer within 5 s");
        return nil;
    }
    dispatch_semaphore_signal(_registered);  // later callers pass straight through
    os_unfair_lock_lock(&_lock);
    NSError *registerError = _registerError;
    NSArray<AAUSBAccessory *> *list = _connected.allValues;
    os_unfair_lock_unlock(&_lock);
    if (registerError != nil) {
        *error = havm_error(HAVM_E_FRAMEWORK, [NSString stringWithFormat:@"AccessoryAccess: %@", registerError.localizedDescription]);
        return nil;
    }
    return list;
}
@end

// idVendor and idProduct from the 18-byte USB device descriptor (little endian at offsets 8 and 10).
API_AVAILABLE(macos(27.0))
static BOOL havm_accessory_ids(AAUSBAccessory *a, uint16_t *vendor, uint16_t *product) {
    NSData *d = a.deviceDescriptorData;
    if (d.length < 12) return NO;
    const uint8_t *b = d.bytes;
    *vendor = (uint16_t)(b[8] | (b[9] << 8));
    *product = (uint16_t)(b[10] | (b[11] << 8));
    return YES;
}

API_AVAILABLE(macos(27.0))
static NSDictionary<NSString *, id> *havm_accessory_json(AAUSBAccessory *a) {
    uint16_t vendor = 0, product = 0;
    havm_accessory_ids(a, &vendor, &product);
    return @{@"registryId": [NSString stringWithFormat:@"%llu", (unsigned long long)a.registryID],
             @"vendorId": @(vendor), @"productId": @(product)};
}

API_AVAILABLE(macos(27.0))
static HavmAccessoryWatcher *havm_watcher(void) {
    static HavmAccessoryWatcher *watcher;
    static dispatch_once_t once;
    dispatch_once(&once, ^{ watcher = [[HavmAccessoryWatcher alloc] init]; });
    return watcher;
}
#endif

// Why USB passthrough is not possible here, or nil when it is.
static NSError *_Nullable havm_usb_unavailable(void) {
#if HAVM_HAVE_ACCESSORY_ACCESS
    if (@available(macOS 27.0, *)) {
        if (!havm_has_entitlement(kEntUSB)) {
            return havm_error(HAVM_E_ENTITLEMENT,
                              @"USB passthrough needs the com.apple.developer.accessory-access.usb entitlement: use a "
                              @"tier-2 build of havm (signed with a provisioning profile); this build is tier 1");
        }
        return nil;
    }
    return havm_error(HAVM_E_UNSUPPORTED, @"USB passthrough to the VM needs macOS 27 or newer");
#else
    return havm_error(HAVM_E_UNSUPPORTED, @"this havm was built with a macOS SDK older than 27: no USB passthrough");
#endif
}

// ---------------------------------------------------------------------------------------------
// Exported ABI

HAVM_EXPORT int32_t havm_abi_version(char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        return HAVM_VZ_ABI_VERSION;
    });
}

HAVM_EXPORT int32_t havm_is_supported(char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        if (@available(macOS 13.0, *)) return VZVirtualMachine.isSupported ? 1 : 0;
        return 0;
    });
}

HAVM_EXPORT int32_t havm_limits(uint64_t *out4, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        if (out4 == NULL) return havm_fail(err, errLen, HAVM_E_INVALID_ARGUMENT, @"out4 is NULL");
        out4[0] = VZVirtualMachineConfiguration.minimumAllowedCPUCount;
        out4[1] = VZVirtualMachineConfiguration.maximumAllowedCPUCount;
        out4[2] = VZVirtualMachineConfiguration.minimumAllowedMemorySize;
        out4[3] = VZVirtualMachineConfiguration.maximumAllowedMemorySize;
        return HAVM_OK;
    });
}

HAVM_EXPORT int32_t havm_entitlements(uint32_t *outMask, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        if (outMask == NULL) return havm_fail(err, errLen, HAVM_E_INVALID_ARGUMENT, @"outMask is NULL");
        uint32_t mask = 0;
        if (havm_has_entitlement(kEntVirtualization)) mask |= HAVM_ENT_VIRTUALIZATION;
        if (havm_has_entitlement(kEntUSB)) mask |= HAVM_ENT_USB;
        if (havm_has_entitlement(kEntNetworking)) mask |= HAVM_ENT_NETWORKING;
        *outMask = mask;
        return HAVM_OK;
    });
}

HAVM_EXPORT int32_t havm_machine_identifier_create(uint8_t *buf, uint32_t cap, uint32_t *outLen, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        if (@available(macOS 13.0, *)) {
            if (buf == NULL || outLen == NULL) return havm_fail(err, errLen, HAVM_E_INVALID_ARGUMENT, @"NULL buffer");
            NSData *data = [[VZGenericMachineIdentifier alloc] init].dataRepresentation;
            *outLen = (uint32_t)data.length;
            if (data.length > cap) return havm_fail(err, errLen, HAVM_E_BUFFER, @"identifier buffer too small");
            memcpy(buf, data.bytes, data.length);
            return HAVM_OK;
        }
        return havm_fail_error(err, errLen, havm_needs_macos13(), HAVM_E_UNSUPPORTED);
    });
}

HAVM_EXPORT int32_t havm_machine_identifier_validate(const uint8_t *bytes, uint32_t len, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        if (@available(macOS 13.0, *)) {
            if (bytes == NULL || len == 0) return 0;
            NSData *data = [NSData dataWithBytes:bytes length:len];
            return [[VZGenericMachineIdentifier alloc] initWithDataRepresentation:data] != nil ? 1 : 0;
        }
        return havm_fail_error(err, errLen, havm_needs_macos13(), HAVM_E_UNSUPPORTED);
    });
}

HAVM_EXPORT int32_t havm_vm_validate(const char *specJson, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        if (@available(macOS 13.0, *)) {
            NSError *error = nil;
            NSDictionary *spec = havm_parse_object(specJson, &error);
            if (spec == nil || havm_build_config(spec, &error) == nil) return havm_fail_error(err, errLen, error, HAVM_E_FRAMEWORK);
            return HAVM_OK;
        }
        return havm_fail_error(err, errLen, havm_needs_macos13(), HAVM_E_UNSUPPORTED);
    });
}

HAVM_EXPORT int32_t havm_vm_create(const char *specJson, void **outHandle, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        if (@available(macOS 13.0, *)) {
            if (outHandle == NULL) return havm_fail(err, errLen, HAVM_E_INVALID_ARGUMENT, @"outHandle is NULL");
            NSError *error = nil;
            NSDictionary *spec = havm_parse_object(specJson, &error);
            VZVirtualMachineConfiguration *cfg = spec ? havm_build_config(spec, &error) : nil;
            if (cfg == nil) return havm_fail_error(err, errLen, error, HAVM_E_FRAMEWORK);
            HavmVM *h = [[HavmVM alloc] init];
            int32_t status = havm_on_queue(h.queue, err, errLen, ^int32_t {
                h.vm = [[VZVirtualMachine alloc] initWithConfiguration:cfg queue:h.queue];
                h.vm.delegate = h.delegate;
                [h.vm addObserver:h forKeyPath:@"state" options:NSKeyValueObservingOptionNew context:kHavmStateContext];
                h.observing = YES;
                return HAVM_OK;
            });
            if (status != HAVM_OK) return status;
            *outHandle = (void *)CFBridgingRetain(h);
            return HAVM_OK;
        }
        return havm_fail_error(err, errLen, havm_needs_macos13(), HAVM_E_UNSUPPORTED);
    });
}

HAVM_EXPORT int32_t havm_vm_start(void *handle, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        NSError *error = nil;
        HavmVM *h = havm_vm_from(handle, &error);
        if (h == nil) return havm_fail_error(err, errLen, error, HAVM_E_INVALID_ARGUMENT);
        return havm_on_queue(h.queue, err, errLen, ^int32_t {
            if (!h.vm.canStart) return havm_fail(err, errLen, HAVM_E_STATE, @"the VM cannot start in its current state");
            __weak HavmVM *weakH = h;
            [h.vm startWithCompletionHandler:^(NSError *_Nullable startError) {
                NSMutableDictionary *ev = [@{@"type": @"start", @"ok": @(startError == nil)} mutableCopy];
                if (startError != nil) ev[@"message"] = havm_clip(startError.localizedDescription);
                [weakH pushEvent:ev];
            }];
            return HAVM_OK;
        });
    });
}

HAVM_EXPORT int32_t havm_vm_request_stop(void *handle, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        NSError *error = nil;
        HavmVM *h = havm_vm_from(handle, &error);
        if (h == nil) return havm_fail_error(err, errLen, error, HAVM_E_INVALID_ARGUMENT);
        return havm_on_queue(h.queue, err, errLen, ^int32_t {
            NSError *stopError = nil;
            // Its BOOL only says the VM was in a state that accepts the request.
            if (!h.vm.canRequestStop || ![h.vm requestStopWithError:&stopError]) {
                return havm_fail(err, errLen, HAVM_E_STATE,
                                 stopError.localizedDescription ?: @"the VM cannot be asked to stop in its current state");
            }
            return HAVM_OK;
        });
    });
}

HAVM_EXPORT int32_t havm_vm_stop(void *handle, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        NSError *error = nil;
        HavmVM *h = havm_vm_from(handle, &error);
        if (h == nil) return havm_fail_error(err, errLen, error, HAVM_E_INVALID_ARGUMENT);
        return havm_on_queue(h.queue, err, errLen, ^int32_t {
            if (!h.vm.canStop) return havm_fail(err, errLen, HAVM_E_STATE, @"the VM cannot be stopped in its current state");
            __weak HavmVM *weakH = h;
            [h.vm stopWithCompletionHandler:^(NSError *_Nullable stopError) {
                NSMutableDictionary *ev = [@{@"type": @"stop", @"ok": @(stopError == nil)} mutableCopy];
                if (stopError != nil) ev[@"message"] = havm_clip(stopError.localizedDescription);
                [weakH pushEvent:ev];
            }];
            return HAVM_OK;
        });
    });
}

HAVM_EXPORT int32_t havm_vm_state(void *handle, int32_t *outState, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        NSError *error = nil;
        HavmVM *h = havm_vm_from(handle, &error);
        if (h == nil) return havm_fail_error(err, errLen, error, HAVM_E_INVALID_ARGUMENT);
        if (outState == NULL) return havm_fail(err, errLen, HAVM_E_INVALID_ARGUMENT, @"outState is NULL");
        return havm_on_queue(h.queue, err, errLen, ^int32_t {
            VZVirtualMachineState state = h.vm.state;
            *outState = (int32_t)state;
            return HAVM_OK;
        });
    });
}

HAVM_EXPORT int32_t havm_vm_next_event(void *handle, char *buf, uint32_t len) {
    return havm_guard(NULL, 0, ^int32_t {
        if (handle == NULL || buf == NULL) return HAVM_E_INVALID_ARGUMENT;
        if (len < HAVM_EVENT_MAX) return HAVM_E_BUFFER;
        return [(__bridge HavmVM *)handle drainInto:buf length:len];
    });
}

HAVM_EXPORT int32_t havm_vm_set_balloon_target(void *handle, uint64_t bytes, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        NSError *error = nil;
        HavmVM *h = havm_vm_from(handle, &error);
        if (h == nil) return havm_fail_error(err, errLen, error, HAVM_E_INVALID_ARGUMENT);
        uint64_t target = (bytes / (1024ull * 1024ull)) * 1024ull * 1024ull;
        return havm_on_queue(h.queue, err, errLen, ^int32_t {
            for (VZMemoryBalloonDevice *dev in h.vm.memoryBalloonDevices) {
                if ([dev isKindOfClass:[VZVirtioTraditionalMemoryBalloonDevice class]]) {
                    ((VZVirtioTraditionalMemoryBalloonDevice *)dev).targetVirtualMachineMemorySize = target;
                    return HAVM_OK;
                }
            }
            return havm_fail(err, errLen, HAVM_E_NOT_FOUND, @"the VM has no memory balloon device");
        });
    });
}

HAVM_EXPORT int32_t havm_vm_balloon_target(void *handle, uint64_t *outBytes, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        NSError *error = nil;
        HavmVM *h = havm_vm_from(handle, &error);
        if (h == nil) return havm_fail_error(err, errLen, error, HAVM_E_INVALID_ARGUMENT);
        if (outBytes == NULL) return havm_fail(err, errLen, HAVM_E_INVALID_ARGUMENT, @"outBytes is NULL");
        return havm_on_queue(h.queue, err, errLen, ^int32_t {
            for (VZMemoryBalloonDevice *dev in h.vm.memoryBalloonDevices) {
                if ([dev isKindOfClass:[VZVirtioTraditionalMemoryBalloonDevice class]]) {
                    *outBytes = ((VZVirtioTraditionalMemoryBalloonDevice *)dev).targetVirtualMachineMemorySize;
                    return HAVM_OK;
                }
            }
            return havm_fail(err, errLen, HAVM_E_NOT_FOUND, @"the VM has no memory balloon device");
        });
    });
}

HAVM_EXPORT int32_t havm_usb_list(char *buf, uint32_t len, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        NSError *why = havm_usb_unavailable();
        if (why != nil) return havm_fail_error(err, errLen, why, HAVM_E_UNSUPPORTED);
#if HAVM_HAVE_ACCESSORY_ACCESS
        if (@available(macOS 27.0, *)) {
            if (buf == NULL) return havm_fail(err, errLen, HAVM_E_INVALID_ARGUMENT, @"buf is NULL");
            NSError *error = nil;
            NSArray<AAUSBAccessory *> *list = [havm_watcher() snapshotWithError:&error];
            if (list == nil) return havm_fail_error(err, errLen, error, HAVM_E_FRAMEWORK);
            NSMutableArray *out = [NSMutableArray array];
            for (AAUSBAccessory *a in list) [out addObject:havm_accessory_json(a)];
            NSData *json = [NSJSONSerialization dataWithJSONObject:out options:0 error:&error];
            if (json == nil) return havm_fail_error(err, errLen, error, HAVM_E_FRAMEWORK);
            if (json.length + 1 > len) return havm_fail(err, errLen, HAVM_E_BUFFER, @"USB list buffer too small");
            memcpy(buf, json.bytes, json.length);
            buf[json.length] = '\0';
            return (int32_t)json.length;
        }
#endif
        return havm_fail(err, errLen, HAVM_E_UNSUPPORTED, @"USB passthrough is unavailable");
    });
}

#if HAVM_HAVE_ACCESSORY_ACCESS
// The one accessory that matches {"vendorId","productId","registryId"?}; an error when none or several.
API_AVAILABLE(macos(27.0))
static AAUSBAccessory *_Nullable havm_find_accessory(NSDictionary *want, NSError **error) {
    NSNumber *vendor = havm_field(want, @"vendorId", [NSNumber class], YES, error);
    NSNumber *product = havm_field(want, @"productId", [NSNumber class], YES, error);
    NSString *registry = havm_field(want, @"registryId", [NSString class], NO, error);
    if (vendor == nil || product == nil) return nil;
    NSArray<AAUSBAccessory *> *list = [havm_watcher() snapshotWithError:error];
    if (list == nil) return nil;
    NSMutableArray<AAUSBAccessory *> *hits = [NSMutableArray array];
    for (AAUSBAccessory *a in list) {
        uint16_t v = 0, p = 0;
        if (!havm_accessory_ids(a, &v, &p) || v != vendor.unsignedIntValue || p != product.unsignedIntValue) continue;
        if (registry != nil && a.registryID != (uint64_t)registry.longLongValue) continue;
        [hits addObject:a];
    }
    if (hits.count == 1) return hits.firstObject;
    NSString *what = [NSString stringWithFormat:@"%04x:%04x", vendor.unsignedIntValue, product.unsignedIntValue];
    *error = hits.count == 0
        ? havm_error(HAVM_E_NOT_FOUND, [NSString stringWithFormat:@"USB device %@ is not connected or not assigned to havm", what])
        : havm_error(HAVM_E_INVALID_ARGUMENT, [NSString stringWithFormat:@"%lu USB devices match %@: name one by registryId",
                                                                         (unsigned long)hits.count, what]);
    return nil;
}
#endif

HAVM_EXPORT int32_t havm_vm_usb_attach(void *handle, const char *deviceJson, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        NSError *error = nil;
        HavmVM *h = havm_vm_from(handle, &error);
        if (h == nil) return havm_fail_error(err, errLen, error, HAVM_E_INVALID_ARGUMENT);
        NSError *why = havm_usb_unavailable();
        if (why != nil) return havm_fail_error(err, errLen, why, HAVM_E_UNSUPPORTED);
#if HAVM_HAVE_ACCESSORY_ACCESS
        if (@available(macOS 27.0, *)) {
            NSDictionary *want = havm_parse_object(deviceJson, &error);
            AAUSBAccessory *accessory = want ? havm_find_accessory(want, &error) : nil;
            if (accessory == nil) return havm_fail_error(err, errLen, error, HAVM_E_FRAMEWORK);
            NSDictionary *ids = havm_accessory_json(accessory);
            NSString *key = ids[@"registryId"];
            return havm_on_queue(h.queue, err, errLen, ^int32_t {
                // The passthrough device is made on the VM queue too, next to the controller call.
                VZUSBController *controller = h.vm.usbControllers.firstObject;
                if (controller == nil) {
                    return havm_fail(err, errLen, HAVM_E_STATE, @"the VM has no USB controller (it must be configured at boot)");
                }
                if (h.usbAttached[key] != nil) return havm_fail(err, errLen, HAVM_E_STATE, @"that USB device is already attached");
                VZUSBPassthroughDeviceConfiguration *devCfg = [[VZUSBPassthroughDeviceConfiguration alloc] initWithDevice:accessory];
                NSError *vzError = nil;
                VZUSBPassthroughDevice *device = [[VZUSBPassthroughDevice alloc] initWithConfiguration:devCfg error:&vzError];
                if (device == nil) return havm_fail_error(err, errLen, vzError, HAVM_E_FRAMEWORK);
                __weak HavmVM *weakH = h;
                [controller attachDevice:device completionHandler:^(NSError *_Nullable attachError) {
                    HavmVM *strongH = weakH;
                    if (attachError == nil) strongH.usbAttached[key] = device;
                    NSMutableDictionary *ev = [@{@"type": @"usb", @"action": @"attach", @"ok": @(attachError == nil)} mutableCopy];
                    [ev addEntriesFromDictionary:ids];
                    if (attachError != nil) ev[@"message"] = havm_clip(attachError.localizedDescription);
                    [strongH pushEvent:ev];
                }];
                return HAVM_OK;
            });
        }
#endif
        return havm_fail(err, errLen, HAVM_E_UNSUPPORTED, @"USB passthrough is unavailable");
    });
}

HAVM_EXPORT int32_t havm_vm_usb_detach(void *handle, const char *deviceJson, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        NSError *error = nil;
        HavmVM *h = havm_vm_from(handle, &error);
        if (h == nil) return havm_fail_error(err, errLen, error, HAVM_E_INVALID_ARGUMENT);
        NSError *why = havm_usb_unavailable();
        if (why != nil) return havm_fail_error(err, errLen, why, HAVM_E_UNSUPPORTED);
#if HAVM_HAVE_ACCESSORY_ACCESS
        if (@available(macOS 27.0, *)) {
            NSDictionary *want = havm_parse_object(deviceJson, &error);
            AAUSBAccessory *accessory = want ? havm_find_accessory(want, &error) : nil;
            if (accessory == nil) return havm_fail_error(err, errLen, error, HAVM_E_FRAMEWORK);
            NSDictionary *ids = havm_accessory_json(accessory);
            NSString *key = ids[@"registryId"];
            return havm_on_queue(h.queue, err, errLen, ^int32_t {
                VZUSBPassthroughDevice *device = h.usbAttached[key];
                VZUSBController *controller = h.vm.usbControllers.firstObject;
                if (device == nil || controller == nil) {
                    return havm_fail(err, errLen, HAVM_E_NOT_FOUND, @"that USB device is not attached to the VM");
                }
                __weak HavmVM *weakH = h;
                [controller detachDevice:device completionHandler:^(NSError *_Nullable detachError) {
                    HavmVM *strongH = weakH;
                    if (detachError == nil) [strongH.usbAttached removeObjectForKey:key];
                    NSMutableDictionary *ev = [@{@"type": @"usb", @"action": @"detach", @"ok": @(detachError == nil)} mutableCopy];
                    [ev addEntriesFromDictionary:ids];
                    if (detachError != nil) ev[@"message"] = havm_clip(detachError.localizedDescription);
                    [strongH pushEvent:ev];
                }];
                return HAVM_OK;
            });
        }
#endif
        return havm_fail(err, errLen, HAVM_E_UNSUPPORTED, @"USB passthrough is unavailable");
    });
}

HAVM_EXPORT int32_t havm_vm_destroy(void *handle, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        if (handle == NULL) return HAVM_OK;
        HavmVM *h = CFBridgingRelease(handle);
        return havm_on_queue(h.queue, err, errLen, ^int32_t {
            if (h.observing) {
                [h.vm removeObserver:h forKeyPath:@"state" context:kHavmStateContext];
                h.observing = NO;
            }
            h.vm.delegate = nil;
            h.vm = nil;
            return HAVM_OK;
        });
    });
}
