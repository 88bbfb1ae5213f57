// havm_menubar.m — the flat C ABI of shim/havm_menubar.h over AppKit: one NSStatusItem with a menu, for the
// separate `havm menubar` process (the VM process never calls into this file).
//
// Rules this file keeps (see vz-facts.md "Menu bar" and the header of havm_vz.m):
//  - Every exported function returns through havm_guard(), the ONLY @try/@catch of this file: an
//    Objective-C exception must never cross the FFI boundary (it would abort the Bun process).
//  - AppKit lives on the main thread, which is Bun's JS thread: every exported function refuses any other
//    thread, so the module state below needs no lock.
//  - Nothing calls into JavaScript: a menu click appends the item's id to a bounded queue that JS drains
//    (havm_menubar_next_click) after pumping events (havm_menubar_pump).
//  - Deployment target macOS 13; everything used here is older (status item button 10.10, NSControlStateValue
//    10.13, NSEventMaskAny 10.12).
//
// Built on macOS by scripts/build-shim-macos.sh (-framework AppKit); compile-checked on Linux by
// shim/objc-check/check.sh menubar.
#import <AppKit/AppKit.h>
#import <Foundation/Foundation.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "havm.h"

#define HAVM_EXPORT HAVM_API

static NSString *const kMenubarErrorDomain = @"havm.menubar";
// NSMenuItem.indentationLevel accepts 0...15.
static const NSInteger kMaxIndent = 15;

// ---------------------------------------------------------------------------------------------
// Error plumbing (the same shape as havm_vz.m; static, so each file has its own copy)

static void havm_mb_copy_cstr(char *dst, uint32_t len, NSString *msg) {
    if (dst == NULL || len == 0) return;
    const char *utf8 = msg.UTF8String ?: "unknown error";
    size_t n = strlen(utf8);
    if (n >= len) n = len - 1;
    memcpy(dst, utf8, n);
    dst[n] = '\0';
}

static int32_t havm_mb_fail(char *err, uint32_t errLen, int32_t code, NSString *msg) {
    havm_mb_copy_cstr(err, errLen, msg);
    return code;
}

static NSError *havm_mb_error(int32_t code, NSString *msg) {
    return [NSError errorWithDomain:kMenubarErrorDomain code:code userInfo:@{NSLocalizedDescriptionKey: msg}];
}

static int32_t havm_mb_fail_error(char *err, uint32_t errLen, NSError *_Nullable error) {
    if (error == nil) return havm_mb_fail(err, errLen, HAVM_E_INVALID_ARGUMENT, @"unknown error");
    int32_t code = [error.domain isEqualToString:kMenubarErrorDomain] ? (int32_t)error.code : HAVM_E_FRAMEWORK;
    return havm_mb_fail(err, errLen, code, error.localizedDescription);
}

typedef int32_t (^HavmMenubarBody)(void);

// The one place that catches Objective-C exceptions. Every exported function returns through it, and it
// also refuses calls from any thread but the main one (AppKit's rule).
static int32_t havm_guard(char *err, uint32_t errLen, NS_NOESCAPE HavmMenubarBody body) {
    @autoreleasepool {
        @try {
            if (pthread_main_np() != 1) {
                return havm_mb_fail(err, errLen, HAVM_E_STATE, @"the menu bar must be driven from the main thread");
            }
            return body();
        } @catch (NSException *e) {
            return havm_mb_fail(err, errLen, HAVM_E_EXCEPTION,
                                [NSString stringWithFormat:@"%@: %@", e.name, e.reason ?: @"(no reason)"]);
        } @catch (id other) {
            return havm_mb_fail(err, errLen, HAVM_E_EXCEPTION, @"non-NSException Objective-C exception");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON field access with type checks (bad input is an error, never an exception)

static id _Nullable havm_mb_field(NSDictionary *obj, NSString *key, Class cls, BOOL required, NSError **error) {
    id v = obj[key];
    if (v == nil || v == [NSNull null]) {
        if (required) *error = havm_mb_error(HAVM_E_INVALID_ARGUMENT, [NSString stringWithFormat:@"menu: missing \"%@\"", key]);
        return nil;
    }
    if (![v isKindOfClass:cls]) {
        *error = havm_mb_error(HAVM_E_INVALID_ARGUMENT, [NSString stringWithFormat:@"menu: \"%@\" has the wrong type", key]);
        return nil;
    }
    return v;
}

static NSDictionary *_Nullable havm_mb_parse_object(const char *_Nullable json, NSError **error) {
    if (json == NULL) {
        *error = havm_mb_error(HAVM_E_INVALID_ARGUMENT, @"menu JSON is NULL");
        return nil;
    }
    NSData *data = [NSData dataWithBytes:json length:strlen(json)];
    NSError *parseError = nil;
    id obj = [NSJSONSerialization JSONObjectWithData:data options:0 error:&parseError];
    if (![obj isKindOfClass:[NSDictionary class]]) {
        *error = havm_mb_error(HAVM_E_INVALID_ARGUMENT,
                               [NSString stringWithFormat:@"menu JSON is not an object: %@",
                                                          parseError.localizedDescription ?: @"wrong type"]);
        return nil;
    }
    return obj;
}

// ---------------------------------------------------------------------------------------------
// Module state (main thread only)

// The target of every clickable item: queues the item's id for JS.
@interface HavmMenuTarget : NSObject
@property (nonatomic, readonly) NSMutableArray<NSString *> *clicks;
- (void)itemClicked:(NSMenuItem *)sender;
@end

@implementation HavmMenuTarget
- (instancetype)init {
    if ((self = [super init])) {
        _clicks = [NSMutableArray arrayWithCapacity:HAVM_MENUBAR_CLICK_QUEUE_CAP];
    }
    return self;
}
- (void)itemClicked:(NSMenuItem *)sender {
    id ident = sender.representedObject;
    if (![ident isKindOfClass:[NSString class]]) return;
    if (self.clicks.count >= HAVM_MENUBAR_CLICK_QUEUE_CAP) return;
    [self.clicks addObject:(NSString *)ident];
}
@end

// The status bar does not retain its items: this reference keeps ours in the menu bar.
static NSStatusItem *gStatusItem;
// NSMenuItem.target is weak: the target lives here.
static HavmMenuTarget *gTarget;
static BOOL gLaunched;

// Builds one menu item from its JSON description; nil with *error set on bad input.
static NSMenuItem *_Nullable havm_mb_item(id raw, NSError **error) {
    if (![raw isKindOfClass:[NSDictionary class]]) {
        *error = havm_mb_error(HAVM_E_INVALID_ARGUMENT, @"menu: every item must be an object");
        return nil;
    }
    NSDictionary *desc = raw;
    NSError *fieldError = nil;
    NSNumber *separator = havm_mb_field(desc, @"separator", [NSNumber class], NO, &fieldError);
    if (fieldError != nil) { *error = fieldError; return nil; }
    if (separator.boolValue) return [NSMenuItem separatorItem];

    NSString *title = havm_mb_field(desc, @"title", [NSString class], YES, &fieldError);
    NSString *ident = havm_mb_field(desc, @"id", [NSString class], NO, &fieldError);
    NSNumber *checked = havm_mb_field(desc, @"checked", [NSNumber class], NO, &fieldError);
    NSNumber *enabled = havm_mb_field(desc, @"enabled", [NSNumber class], NO, &fieldError);
    NSNumber *indent = havm_mb_field(desc, @"indent", [NSNumber class], NO, &fieldError);
    NSString *tooltip = havm_mb_field(desc, @"tooltip", [NSString class], NO, &fieldError);
    if (fieldError != nil || title == nil) {
        *error = fieldError ?: havm_mb_error(HAVM_E_INVALID_ARGUMENT, @"menu: missing \"title\"");
        return nil;
    }
    if (ident != nil && strlen(ident.UTF8String ?: "") >= HAVM_MENUBAR_ID_MAX) {
        *error = havm_mb_error(HAVM_E_INVALID_ARGUMENT, @"menu: an item id is longer than HAVM_MENUBAR_ID_MAX - 1 bytes");
        return nil;
    }

    NSMenuItem *item = [[NSMenuItem alloc] initWithTitle:title
                                                  action:(ident != nil ? @selector(itemClicked:) : NULL)
                                           keyEquivalent:@""];
    item.target = ident != nil ? gTarget : nil;
    item.representedObject = ident;
    item.state = checked.boolValue ? NSControlStateValueOn : NSControlStateValueOff;
    item.enabled = ident != nil && (enabled == nil || enabled.boolValue);
    NSInteger level = indent.integerValue;
    item.indentationLevel = level < 0 ? 0 : (level > kMaxIndent ? kMaxIndent : level);
    item.toolTip = tooltip;
    return item;
}

// ---------------------------------------------------------------------------------------------
// Exported functions

HAVM_EXPORT int32_t havm_menubar_abi_version(char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        return HAVM_MENUBAR_ABI_VERSION;
    });
}

HAVM_EXPORT int32_t havm_menubar_create(char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        if (gStatusItem != nil) return HAVM_OK;
        // Without a login session (ssh, a LaunchDaemon) AppKit cannot reach the window server: say so
        // instead of letting NSApplication fail on its own terms.
        CFDictionaryRef session = CGSessionCopyCurrentDictionary();
        if (session == NULL) {
            return havm_mb_fail(err, errLen, HAVM_E_UNSUPPORTED, @"no GUI login session (window server) is reachable from this process");
        }
        CFRelease(session);
        NSApplication *app = [NSApplication sharedApplication];
        if (!gLaunched) {
            // Accessory: no Dock icon and no app menu, like an LSUIElement app.
            [app setActivationPolicy:NSApplicationActivationPolicyAccessory];
            [app finishLaunching];
            gLaunched = YES;
        }
        if (gTarget == nil) gTarget = [[HavmMenuTarget alloc] init];
        NSStatusItem *item = [[NSStatusBar systemStatusBar] statusItemWithLength:NSVariableStatusItemLength];
        NSStatusBarButton *button = item.button;
        if (button != nil) button.title = @"havm";
        gStatusItem = item;
        return HAVM_OK;
    });
}

HAVM_EXPORT int32_t havm_menubar_set_menu(const char *menuJson, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        if (gStatusItem == nil) return havm_mb_fail(err, errLen, HAVM_E_STATE, @"call havm_menubar_create first");
        NSError *error = nil;
        NSDictionary *spec = havm_mb_parse_object(menuJson, &error);
        if (spec == nil) return havm_mb_fail_error(err, errLen, error);
        NSString *title = havm_mb_field(spec, @"title", [NSString class], YES, &error);
        NSArray *items = havm_mb_field(spec, @"items", [NSArray class], YES, &error);
        NSString *tooltip = havm_mb_field(spec, @"tooltip", [NSString class], NO, &error);
        if (error != nil || title == nil || items == nil) return havm_mb_fail_error(err, errLen, error);

        NSMenu *menu = [[NSMenu alloc] initWithTitle:title];
        // The JSON says which items are enabled; AppKit must not re-decide from the target.
        menu.autoenablesItems = NO;
        for (id raw in items) {
            NSMenuItem *item = havm_mb_item(raw, &error);
            if (item == nil) return havm_mb_fail_error(err, errLen, error);
            [menu addItem:item];
        }
        gStatusItem.menu = menu;
        NSStatusBarButton *button = gStatusItem.button;
        if (button != nil) {
            button.title = title;
            button.toolTip = tooltip;
        }
        return HAVM_OK;
    });
}

HAVM_EXPORT int32_t havm_menubar_pump(uint32_t ms, char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        if (gStatusItem == nil) return havm_mb_fail(err, errLen, HAVM_E_STATE, @"call havm_menubar_create first");
        NSApplication *app = [NSApplication sharedApplication];
        NSDate *deadline = [NSDate dateWithTimeIntervalSinceNow:(NSTimeInterval)ms / 1000.0];
        NSUInteger clicksBefore = gTarget.clicks.count;
        int32_t dispatched = 0;
        // Bounded: a flood of events must not keep JS from running for longer than a few deadlines.
        while (dispatched < 10000) {
            @autoreleasepool {
                NSEvent *event = [app nextEventMatchingMask:NSEventMaskAny
                                                  untilDate:deadline
                                                     inMode:NSDefaultRunLoopMode
                                                    dequeue:YES];
                if (event == nil) break;
                // A click on the status item opens the menu and tracks it inside sendEvent: until it closes.
                [app sendEvent:event];
                dispatched++;
            }
            if (gTarget.clicks.count > clicksBefore) break;
        }
        return dispatched;
    });
}

HAVM_EXPORT int32_t havm_menubar_next_click(char *buf, uint32_t len) {
    return havm_guard(NULL, 0, ^int32_t {
        if (buf == NULL) return HAVM_E_INVALID_ARGUMENT;
        if (len < HAVM_MENUBAR_ID_MAX) return HAVM_E_BUFFER;
        NSMutableArray<NSString *> *clicks = gTarget.clicks;
        if (clicks == nil || clicks.count == 0) return 0;
        NSString *ident = clicks.firstObject;
        [clicks removeObjectAtIndex:0];
        const char *utf8 = ident.UTF8String ?: "";
        size_t n = strlen(utf8);
        if (n >= len) n = len - 1;  // cannot happen: set_menu refuses longer ids
        memcpy(buf, utf8, n);
        buf[n] = '\0';
        return (int32_t)n;
    });
}

HAVM_EXPORT int32_t havm_menubar_destroy(char *err, uint32_t errLen) {
    return havm_guard(err, errLen, ^int32_t {
        if (gStatusItem != nil) {
            [[NSStatusBar systemStatusBar] removeStatusItem:gStatusItem];
            gStatusItem = nil;
        }
        [gTarget.clicks removeAllObjects];
        return HAVM_OK;
    });
}
