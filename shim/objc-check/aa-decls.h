// aa-decls.h — stand-in for <AccessoryAccess/AccessoryAccess.h> (macOS 27 SDK), transcribed by hand
// from Apple's AccessoryAccess documentation: the subset shim/vz/havm_vz.m uses. Linux check only.
#pragma once
#import <Foundation/Foundation.h>
#import <dispatch/dispatch.h>

NS_ASSUME_NONNULL_BEGIN

API_AVAILABLE(macos(27.0))
@interface AAUSBAccessory : NSObject <NSSecureCoding>
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
/* IORegistry entry ID of the accessory. */
@property (readonly) uint64_t registryID;
/* The USB device descriptor (idVendor at byte 8, idProduct at byte 10, little endian). */
@property (readonly, copy) NSData *deviceDescriptorData;
@property (readonly, copy, nullable) NSData *configurationDescriptorData;
@end

API_AVAILABLE(macos(27.0))
@interface AAUSBAccessoryMatchingCriteria : NSObject <NSCopying>
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
- (nullable instancetype)initWithDeviceMatchingDictionary:(NSDictionary<NSString *, id> *)dictionary;
@end

/* Methods are invoked on the internal serial queue of AAUSBAccessoryManager. */
API_AVAILABLE(macos(27.0))
@protocol AAUSBAccessoryListener <NSObject>
@optional
- (void)usbAccessoryDidConnect:(AAUSBAccessory *)usbAccessory;
- (void)usbAccessoryDidDisconnect:(AAUSBAccessory *)usbAccessory;
@end

API_AVAILABLE(macos(27.0))
@interface AAUSBAccessoryManager : NSObject
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@property (class, readonly, strong) AAUSBAccessoryManager *sharedManager;
/* An empty criteria array matches every accessory assigned to the app. The completion handler
 * receives the matching accessories already connected. */
- (void)registerListener:(id<AAUSBAccessoryListener>)listener
    withMatchingCriteria:(NSArray<AAUSBAccessoryMatchingCriteria *> *)matchingCriteria
       completionHandler:(void (^)(NSArray<AAUSBAccessory *> *accessories, NSError *_Nullable error))completionHandler;
- (void)unregisterListener:(id<AAUSBAccessoryListener>)listener completionHandler:(void (^)(void))completionHandler;
@end

NS_ASSUME_NONNULL_END
