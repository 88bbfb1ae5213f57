/* havm_menubar.h — the flat C ABI of libhavm's menu bar part (shim/vz/havm_menubar.m, AppKit), used only by
 * the separate `havm menubar` process (src/ffi/menubar.ts); the VM process never calls it.
 *
 * Same conventions as havm.h (test/menubar/abi.test.ts parses this file): one prototype per line, int32_t
 * status (0 or a documented count, negative HAVM_E_* on failure), caller-provided error buffers.
 * Threading: AppKit needs the process main thread, which is Bun's JS thread; every function refuses any
 * other thread (HAVM_E_STATE). Nothing calls back into JS: clicks are queued and drained with
 * havm_menubar_next_click, and JS pumps AppKit's events from a timer with havm_menubar_pump.
 */
#ifndef HAVM_MENUBAR_H
#define HAVM_MENUBAR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef HAVM_API
#define HAVM_API __attribute__((visibility("default")))
#endif

/* Bumped whenever a prototype or the menu JSON shape changes; the loader refuses a mismatch. */
#define HAVM_MENUBAR_ABI_VERSION 1
/* Longest item id havm_menubar_next_click may produce (NUL included); pass at least this much buffer. */
#define HAVM_MENUBAR_ID_MAX 256
/* Bounded click queue: clicks beyond this many undrained ones are dropped (a human cannot click that fast). */
#define HAVM_MENUBAR_CLICK_QUEUE_CAP 64

/* HAVM_MENUBAR_ABI_VERSION of the compiled library. */
HAVM_API int32_t havm_menubar_abi_version(char *err, uint32_t errLen);
/* Makes the process an accessory app (no Dock icon, no app menu) and adds the status item. Idempotent.
 * HAVM_E_UNSUPPORTED when no window server is reachable (no GUI session). */
HAVM_API int32_t havm_menubar_create(char *err, uint32_t errLen);
/* Replaces the status item's title and menu. menuJson: {"title":"..","tooltip":".."?,"items":[
 * {"id":"..","title":"..","checked":bool?,"enabled":bool?,"indent":n?,"tooltip":".."?} | {"separator":true}]}.
 * An item without an id (or with enabled:false) cannot be clicked. Ids are at most HAVM_MENUBAR_ID_MAX-1 bytes. */
HAVM_API int32_t havm_menubar_set_menu(const char *menuJson, char *err, uint32_t errLen);
/* Dispatches AppKit events for up to ms milliseconds (returns earlier only when a click was queued).
 * While the user holds the menu open this blocks until it closes (AppKit tracks the menu itself).
 * Returns the number of events dispatched. */
HAVM_API int32_t havm_menubar_pump(uint32_t ms, char *err, uint32_t errLen);
/* Copies the oldest queued click's item id into buf (NUL-terminated) and returns its length; 0 = no click.
 * HAVM_E_BUFFER if len < HAVM_MENUBAR_ID_MAX. */
HAVM_API int32_t havm_menubar_next_click(char *buf, uint32_t len);
/* Removes the status item and drops queued clicks. havm_menubar_create may be called again afterwards. */
HAVM_API int32_t havm_menubar_destroy(char *err, uint32_t errLen);

#ifdef __cplusplus
}
#endif
#endif /* HAVM_MENUBAR_H */
