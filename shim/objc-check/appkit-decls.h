// appkit-decls.h — stand-in for <AppKit/AppKit.h> (plus the CoreGraphics bits AppKit pulls in), transcribed
// by hand from Apple's documentation for NSApplication, NSStatusBar, NSStatusItem, NSStatusBarButton, NSMenu,
// NSMenuItem and CGSessionCopyCurrentDictionary: the subset shim/vz/havm_menubar.m uses. Linux check only.
#pragma once
#import <Foundation/Foundation.h>

/* ---- CoreGraphics (CGBase.h, CGSession.h) ---- */
typedef double CGFloat; /* CGFLOAT_IS_DOUBLE on every 64-bit Mac */
typedef const struct CF_BRIDGED_TYPE(NSDictionary) __CFDictionary *CFDictionaryRef;
/* The current login session's attributes; NULL when the caller runs outside a window-server session. */
extern CFDictionaryRef _Nullable CGSessionCopyCurrentDictionary(void) API_AVAILABLE(macos(10.3));

#define APPKIT_EXTERN extern __attribute__((visibility("default")))

NS_ASSUME_NONNULL_BEGIN

@class NSMenu, NSMenuItem, NSStatusItem, NSStatusBarButton;

/* ---- NSResponder / NSView / NSControl / NSButton ---- */
@interface NSResponder : NSObject <NSCoding>
@end
@interface NSView : NSResponder
@property (nullable, copy) NSString *toolTip;
@property (getter=isHidden) BOOL hidden;
@end
@interface NSControl : NSView
@property (getter=isEnabled) BOOL enabled;
@end
@interface NSButton : NSControl
@property (copy) NSString *title;
@end
API_AVAILABLE(macos(10.10))
@interface NSStatusBarButton : NSButton
@property BOOL appearsDisabled;
@end

/* ---- NSEvent ---- */
typedef NS_OPTIONS(unsigned long long, NSEventMask) {
    NSEventMaskLeftMouseDown = 1ULL << 1,
    NSEventMaskLeftMouseUp = 1ULL << 2,
    NSEventMaskKeyDown = 1ULL << 10,
    NSEventMaskAny = NSUIntegerMax,
};
@interface NSEvent : NSObject <NSCopying, NSCoding>
@end

/* ---- NSApplication (NSRunningApplication.h declares the policy) ---- */
typedef NS_ENUM(NSInteger, NSApplicationActivationPolicy) {
    NSApplicationActivationPolicyRegular,
    NSApplicationActivationPolicyAccessory,
    NSApplicationActivationPolicyProhibited
};
@interface NSApplication : NSResponder
@property (class, readonly, strong) __kindof NSApplication *sharedApplication;
- (void)finishLaunching;
- (nullable NSEvent *)nextEventMatchingMask:(NSEventMask)mask
                                  untilDate:(nullable NSDate *)expiration
                                     inMode:(NSRunLoopMode)mode
                                    dequeue:(BOOL)deqFlag;
- (void)sendEvent:(NSEvent *)event;
- (BOOL)setActivationPolicy:(NSApplicationActivationPolicy)activationPolicy API_AVAILABLE(macos(10.6));
- (void)terminate:(nullable id)sender;
@end
APPKIT_EXTERN __kindof NSApplication *_Null_unspecified NSApp;

/* ---- NSCell.h: control state ---- */
typedef NSInteger NSControlStateValue NS_TYPED_EXTENSIBLE_ENUM;
static const NSControlStateValue NSControlStateValueMixed API_AVAILABLE(macos(10.13)) = -1;
static const NSControlStateValue NSControlStateValueOff API_AVAILABLE(macos(10.13)) = 0;
static const NSControlStateValue NSControlStateValueOn API_AVAILABLE(macos(10.13)) = 1;

/* ---- NSMenu / NSMenuItem ---- */
@interface NSMenu : NSObject <NSCopying, NSCoding>
- (instancetype)initWithTitle:(NSString *)title NS_DESIGNATED_INITIALIZER;
@property (copy) NSString *title;
- (void)addItem:(NSMenuItem *)newItem;
- (void)removeAllItems API_AVAILABLE(macos(10.6));
@property (readonly) NSInteger numberOfItems;
@property BOOL autoenablesItems;
@end

@interface NSMenuItem : NSObject <NSCopying, NSCoding>
+ (NSMenuItem *)separatorItem;
+ (NSMenuItem *)sectionHeaderWithTitle:(NSString *)title API_AVAILABLE(macos(14.0));
- (instancetype)initWithTitle:(NSString *)string
                       action:(nullable SEL)selector
                keyEquivalent:(NSString *)charCode NS_DESIGNATED_INITIALIZER;
@property (copy) NSString *title;
@property (nullable, weak) id target;
@property (nullable) SEL action;
@property (getter=isEnabled) BOOL enabled;
@property NSControlStateValue state;
@property NSInteger indentationLevel;
@property (nullable, copy) NSString *toolTip;
@property (nullable, strong) id representedObject;
@property (readonly, getter=isSeparatorItem) BOOL separatorItem;
@end

/* ---- NSStatusBar / NSStatusItem ---- */
static const CGFloat NSVariableStatusItemLength = -1;
static const CGFloat NSSquareStatusItemLength = -2;

@interface NSStatusBar : NSObject
@property (class, readonly, strong) NSStatusBar *systemStatusBar;
- (NSStatusItem *)statusItemWithLength:(CGFloat)length;
- (void)removeStatusItem:(NSStatusItem *)item;
@property (readonly) CGFloat thickness;
@end

@interface NSStatusItem : NSObject
@property (readonly, weak) NSStatusBar *statusBar;
@property CGFloat length;
@property (nullable, strong) NSMenu *menu;
@property (nullable, readonly, strong) NSStatusBarButton *button API_AVAILABLE(macos(10.10));
@property (getter=isVisible) BOOL visible API_AVAILABLE(macos(10.12));
@end

NS_ASSUME_NONNULL_END
