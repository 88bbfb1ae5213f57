/* havm.h — the flat C ABI of libhavm (loaded by bun:ffi from src/ffi/).
 *
 * Conventions (every function below follows them; test/vz/abi.test.ts parses this file):
 *   - One prototype per line, `HAVM_API <return type> <name>(<args>);`, C types only.
 *   - Status: int32_t, 0 (or a documented count) on success, a negative HAVM_E_* code on failure.
 *   - Errors: the caller passes a buffer (`char *err, uint32_t errLen`); on failure it receives a
 *     NUL-terminated UTF-8 message (truncated to fit). Framework errors are copied verbatim.
 *   - Specs and devices go in as NUL-terminated JSON; results come out as JSON in caller buffers.
 *   - A VM is an opaque handle (void *) owned by the caller until havm_vm_destroy.
 *   - Nothing calls back into the caller: VM events are queued in the library and drained with
 *     havm_vm_next_event (no JS callback is ever invoked from a GCD thread).
 *
 * macOS side: shim/vz/havm_vz.m (Virtualization.framework). Portable part: havm_fs.h (shim/fs.c).
 */
#ifndef HAVM_H
#define HAVM_H

#include <stdint.h>
#include "havm_fs.h"
#include "havm_menubar.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef HAVM_API
#define HAVM_API __attribute__((visibility("default")))
#endif

/* Bumped whenever a prototype or a JSON shape below changes; the loader refuses a mismatch. */
#define HAVM_VZ_ABI_VERSION 1

/* Status codes (negative). */
#define HAVM_OK 0
#define HAVM_E_INVALID_ARGUMENT (-1)  /* bad JSON, missing field, NULL pointer */
#define HAVM_E_UNSUPPORTED (-2)       /* needs a newer macOS or unsupported hardware */
#define HAVM_E_VALIDATION (-3)        /* -[VZVirtualMachineConfiguration validateWithError:] said no */
#define HAVM_E_ENTITLEMENT (-4)       /* the binary lacks the entitlement (build tier) */
#define HAVM_E_STATE (-5)             /* the VM is not in a state that allows this */
#define HAVM_E_FRAMEWORK (-6)         /* an NSError from Virtualization/AccessoryAccess */
#define HAVM_E_NOT_FOUND (-7)         /* no such USB device / network interface */
#define HAVM_E_BUFFER (-8)            /* the caller's output buffer is too small */
#define HAVM_E_IO (-9)                /* host file could not be opened/created */
#define HAVM_E_EXCEPTION (-99)        /* an Objective-C exception was caught at the boundary */

/* Raw VZVirtualMachineState values reported by havm_vm_state and in "state" events. */
#define HAVM_STATE_STOPPED 0
#define HAVM_STATE_RUNNING 1
#define HAVM_STATE_PAUSED 2
#define HAVM_STATE_ERROR 3
#define HAVM_STATE_STARTING 4
#define HAVM_STATE_PAUSING 5
#define HAVM_STATE_RESUMING 6
#define HAVM_STATE_STOPPING 7
#define HAVM_STATE_SAVING 8
#define HAVM_STATE_RESTORING 9

/* Entitlement bits reported by havm_entitlements. */
#define HAVM_ENT_VIRTUALIZATION 1u /* com.apple.security.virtualization (tier 1) */
#define HAVM_ENT_USB 2u            /* com.apple.developer.accessory-access.usb (tier 2) */
#define HAVM_ENT_NETWORKING 4u     /* com.apple.vm.networking (tier 3) */

/* Longest event line havm_vm_next_event may produce; pass at least this much buffer. */
#define HAVM_EVENT_MAX 4096
/* Bounded event queue: when full, the oldest event is dropped and a "dropped" event reports it. */
#define HAVM_EVENT_QUEUE_CAP 1024

/* ---- host ---- */

/* HAVM_VZ_ABI_VERSION of the compiled library. */
HAVM_API int32_t havm_abi_version(char *err, uint32_t errLen);
/* 1 when VZVirtualMachine.isSupported (and macOS >= 13), 0 otherwise. */
HAVM_API int32_t havm_is_supported(char *err, uint32_t errLen);
/* out4 receives {minCpus, maxCpus, minMemoryBytes, maxMemoryBytes} from VZVirtualMachineConfiguration. */
HAVM_API int32_t havm_limits(uint64_t *out4, char *err, uint32_t errLen);
/* *outMask receives HAVM_ENT_* bits of the entitlements the running executable carries. */
HAVM_API int32_t havm_entitlements(uint32_t *outMask, char *err, uint32_t errLen);

/* ---- machine identifier (VZGenericMachineIdentifier.dataRepresentation) ---- */

/* Writes a fresh identifier into buf; *outLen receives its length (HAVM_E_BUFFER if cap is too small). */
HAVM_API int32_t havm_machine_identifier_create(uint8_t *buf, uint32_t cap, uint32_t *outLen, char *err, uint32_t errLen);
/* 1 when the framework accepts the bytes (initWithDataRepresentation: non-nil), 0 when not. */
HAVM_API int32_t havm_machine_identifier_validate(const uint8_t *bytes, uint32_t len, char *err, uint32_t errLen);

/* ---- VM ---- */

/* Builds the configuration from the spec JSON (src/vm/vz/translate.ts) and validates it; no VM is made.
 * Creates the EFI variable store when the spec says so. Validation errors are reported verbatim. */
HAVM_API int32_t havm_vm_validate(const char *specJson, char *err, uint32_t errLen);
/* Builds, validates and creates the VM on its own serial queue; *outHandle receives the handle. */
HAVM_API int32_t havm_vm_create(const char *specJson, void **outHandle, char *err, uint32_t errLen);
/* Asynchronous: the outcome arrives as a {"type":"start","ok":...} event. */
HAVM_API int32_t havm_vm_start(void *handle, char *err, uint32_t errLen);
/* Asks the guest to power off (requestStopWithError:). 0 = delivered; HAVM_E_STATE when not stoppable. */
HAVM_API int32_t havm_vm_request_stop(void *handle, char *err, uint32_t errLen);
/* Asynchronous, destructive stop; the outcome arrives as a {"type":"stop","ok":...} event. */
HAVM_API int32_t havm_vm_stop(void *handle, char *err, uint32_t errLen);
/* *outState receives the raw HAVM_STATE_* value, read on the VM queue. */
HAVM_API int32_t havm_vm_state(void *handle, int32_t *outState, char *err, uint32_t errLen);
/* Drains queued events into buf as NDJSON lines ("...\n" each, never split across calls).
 * Returns the number of bytes written (0 = queue empty); HAVM_E_BUFFER if len < HAVM_EVENT_MAX. */
HAVM_API int32_t havm_vm_next_event(void *handle, char *buf, uint32_t len);
/* Balloon target in bytes (rounded down to 1 MiB by the shim), set on the VM queue. */
HAVM_API int32_t havm_vm_set_balloon_target(void *handle, uint64_t bytes, char *err, uint32_t errLen);
/* *outBytes receives the current balloon target. */
HAVM_API int32_t havm_vm_balloon_target(void *handle, uint64_t *outBytes, char *err, uint32_t errLen);
/* USB passthrough (macOS 27, AccessoryAccess, tier 2 entitlement). deviceJson:
 * {"vendorId":n,"productId":n,"registryId":"<decimal u64>"?}. Asynchronous: a {"type":"usb",...} event. */
HAVM_API int32_t havm_vm_usb_attach(void *handle, const char *deviceJson, char *err, uint32_t errLen);
HAVM_API int32_t havm_vm_usb_detach(void *handle, const char *deviceJson, char *err, uint32_t errLen);
/* Stops observing, releases the VM and its queue. The handle is invalid afterwards. */
HAVM_API int32_t havm_vm_destroy(void *handle, char *err, uint32_t errLen);

/* ---- USB accessories on the host (macOS 27, AccessoryAccess) ---- */

/* Writes a JSON array [{"registryId":"..","vendorId":n,"productId":n}] of the accessories the user
 * assigned to this app; returns the byte count. HAVM_E_ENTITLEMENT / HAVM_E_UNSUPPORTED explain why not. */
HAVM_API int32_t havm_usb_list(char *buf, uint32_t len, char *err, uint32_t errLen);

#ifdef __cplusplus
}
#endif
#endif /* HAVM_H */
