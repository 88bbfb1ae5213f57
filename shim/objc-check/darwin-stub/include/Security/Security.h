/* Security.h — hand-written subset of Apple's Security framework (SecTask.h), transcribed from
 * Apple's documentation: only what the shim's entitlement probe uses. */
#ifndef HAVM_STUB_SECURITY_H
#define HAVM_STUB_SECURITY_H
#import <Foundation/Foundation.h>

#pragma clang assume_nonnull begin
typedef struct CF_BRIDGED_TYPE(id) __SecTask *SecTaskRef;

/* Returns NULL on failure; release with CFRelease. macOS 10.7+. */
extern SecTaskRef _Nullable SecTaskCreateFromSelf(CFAllocatorRef _Nullable allocator)
    API_AVAILABLE(macos(10.7));

/* Returns the entitlement's value (CFBooleanRef for boolean entitlements) or NULL; caller releases. */
extern CFTypeRef _Nullable SecTaskCopyValueForEntitlement(SecTaskRef task, CFStringRef entitlement,
                                                          CFErrorRef _Nullable * _Nullable error)
    API_AVAILABLE(macos(10.7));
#pragma clang assume_nonnull end
#endif
