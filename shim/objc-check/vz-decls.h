// vz-decls.h — stand-in for <Virtualization/Virtualization.h>, transcribed by hand from Apple's
// Virtualization documentation (developer.apple.com/documentation/virtualization) for exactly the
// subset shim/vz/havm_vz.m uses: selectors, nullability, designated/unavailable initializers and
// availability. Used only by the Linux compile check (shim/objc-check/check.sh); the macOS build uses
// the real SDK. When the shim starts using another API, add it here from Apple's page first.
#pragma once
#import <Foundation/Foundation.h>
#import <dispatch/dispatch.h>

NS_ASSUME_NONNULL_BEGIN

@class VZVirtualMachine, VZNetworkDevice, VZUSBController, AAUSBAccessory;

// ---- VZVirtualMachine.h: state ----
typedef NS_ENUM(NSInteger, VZVirtualMachineState) {
    VZVirtualMachineStateStopped,
    VZVirtualMachineStateRunning,
    VZVirtualMachineStatePaused,
    VZVirtualMachineStateError,
    VZVirtualMachineStateStarting,
    VZVirtualMachineStatePausing,
    VZVirtualMachineStateResuming,
    VZVirtualMachineStateStopping API_AVAILABLE(macos(12.0)),
    VZVirtualMachineStateSaving API_AVAILABLE(macos(14.0)),
    VZVirtualMachineStateRestoring API_AVAILABLE(macos(14.0)),
} API_AVAILABLE(macos(11.0));

extern NSErrorDomain const VZErrorDomain API_AVAILABLE(macos(11.0));

// ---- Boot loader + EFI variable store ----
API_AVAILABLE(macos(11.0))
@interface VZBootLoader : NSObject <NSCopying>
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@end

typedef NS_OPTIONS(NSUInteger, VZEFIVariableStoreInitializationOptions) {
    VZEFIVariableStoreInitializationOptionAllowOverwrite = 1 << 0,
} API_AVAILABLE(macos(13.0));

API_AVAILABLE(macos(13.0))
@interface VZEFIVariableStore : NSObject
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
- (instancetype)initWithURL:(NSURL *)URL;
- (nullable instancetype)initCreatingVariableStoreAtURL:(NSURL *)URL
                                                options:(VZEFIVariableStoreInitializationOptions)options
                                                  error:(NSError **)error;
@property (readonly, copy) NSURL *URL;
@end

API_AVAILABLE(macos(13.0))
@interface VZEFIBootLoader : VZBootLoader
- (instancetype)init NS_DESIGNATED_INITIALIZER;
@property (nullable, strong) VZEFIVariableStore *variableStore;
@end

// ---- Platform ----
API_AVAILABLE(macos(13.0))
@interface VZGenericMachineIdentifier : NSObject <NSCopying>
- (instancetype)init;
- (nullable instancetype)initWithDataRepresentation:(NSData *)dataRepresentation;
@property (readonly, copy) NSData *dataRepresentation;
@end

API_AVAILABLE(macos(12.0))
@interface VZPlatformConfiguration : NSObject <NSCopying>
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@end

API_AVAILABLE(macos(13.0))
@interface VZGenericPlatformConfiguration : VZPlatformConfiguration
- (instancetype)init NS_DESIGNATED_INITIALIZER;
@property (copy) VZGenericMachineIdentifier *machineIdentifier;
@property (class, readonly, getter=isNestedVirtualizationSupported) BOOL nestedVirtualizationSupported API_AVAILABLE(macos(15.0));
@property (getter=isNestedVirtualizationEnabled) BOOL nestedVirtualizationEnabled API_AVAILABLE(macos(15.0));
@end

// ---- Storage ----
API_AVAILABLE(macos(11.0))
@interface VZStorageDeviceAttachment : NSObject
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@end

typedef NS_ENUM(NSInteger, VZDiskImageCachingMode) {
    VZDiskImageCachingModeAutomatic = 0,
    VZDiskImageCachingModeUncached = 1,
    VZDiskImageCachingModeCached = 2,
} API_AVAILABLE(macos(12.0));

typedef NS_ENUM(NSInteger, VZDiskImageSynchronizationMode) {
    VZDiskImageSynchronizationModeFull = 1,
    VZDiskImageSynchronizationModeFsync = 2,
    VZDiskImageSynchronizationModeNone = 3,
} API_AVAILABLE(macos(12.0));

API_AVAILABLE(macos(11.0))
@interface VZDiskImageStorageDeviceAttachment : VZStorageDeviceAttachment
- (nullable instancetype)initWithURL:(NSURL *)url readOnly:(BOOL)readOnly error:(NSError **)error NS_DESIGNATED_INITIALIZER;
- (nullable instancetype)initWithURL:(NSURL *)url
                            readOnly:(BOOL)readOnly
                         cachingMode:(VZDiskImageCachingMode)cachingMode
                 synchronizationMode:(VZDiskImageSynchronizationMode)synchronizationMode
                               error:(NSError **)error NS_DESIGNATED_INITIALIZER API_AVAILABLE(macos(12.0));
@property (readonly, copy) NSURL *URL;
@property (readonly, getter=isReadOnly) BOOL readOnly;
@property (readonly) VZDiskImageCachingMode cachingMode API_AVAILABLE(macos(12.0));
@property (readonly) VZDiskImageSynchronizationMode synchronizationMode API_AVAILABLE(macos(12.0));
@end

API_AVAILABLE(macos(11.0))
@interface VZStorageDeviceConfiguration : NSObject <NSCopying>
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@property (readonly, strong) VZStorageDeviceAttachment *attachment;
@end

API_AVAILABLE(macos(11.0))
@interface VZVirtioBlockDeviceConfiguration : VZStorageDeviceConfiguration
- (instancetype)initWithAttachment:(VZStorageDeviceAttachment *)attachment NS_DESIGNATED_INITIALIZER;
@end

// ---- USB (controllers 15, passthrough 27) ----
API_AVAILABLE(macos(15.0))
@protocol VZUSBDeviceConfiguration <NSObject>
@end

API_AVAILABLE(macos(15.0))
@protocol VZUSBDevice <NSObject>
@property (readonly, weak, nullable) VZUSBController *usbController;
@end

API_AVAILABLE(macos(13.0))
@interface VZUSBMassStorageDeviceConfiguration : VZStorageDeviceConfiguration
- (instancetype)initWithAttachment:(VZStorageDeviceAttachment *)attachment NS_DESIGNATED_INITIALIZER;
@end

API_AVAILABLE(macos(15.0))
@interface VZUSBMassStorageDeviceConfiguration (VZUSBDeviceConfiguration) <VZUSBDeviceConfiguration>
@end

API_AVAILABLE(macos(15.0))
@interface VZUSBControllerConfiguration : NSObject <NSCopying>
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@property (copy) NSArray<id<VZUSBDeviceConfiguration>> *usbDevices;
@end

API_AVAILABLE(macos(15.0))
@interface VZXHCIControllerConfiguration : VZUSBControllerConfiguration
- (instancetype)init NS_DESIGNATED_INITIALIZER;
@end

API_AVAILABLE(macos(15.0))
@interface VZUSBController : NSObject
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@property (readonly, copy) NSArray<id<VZUSBDevice>> *usbDevices;
- (void)attachDevice:(id<VZUSBDevice>)device completionHandler:(void (^)(NSError *_Nullable error))completionHandler;
- (void)detachDevice:(id<VZUSBDevice>)device completionHandler:(void (^)(NSError *_Nullable error))completionHandler;
@end

API_AVAILABLE(macos(27.0))
@interface VZUSBPassthroughDeviceConfiguration : NSObject <VZUSBDeviceConfiguration, NSCopying>
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
- (instancetype)initWithDevice:(AAUSBAccessory *)device NS_DESIGNATED_INITIALIZER;
@end

API_AVAILABLE(macos(27.0))
@interface VZUSBPassthroughDevice : NSObject <VZUSBDevice>
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
- (nullable instancetype)initWithConfiguration:(VZUSBPassthroughDeviceConfiguration *)configuration
                                         error:(NSError **)error NS_DESIGNATED_INITIALIZER;
@end

// ---- Network ----
API_AVAILABLE(macos(11.0))
@interface VZNetworkDeviceAttachment : NSObject
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@end

API_AVAILABLE(macos(11.0))
@interface VZNATNetworkDeviceAttachment : VZNetworkDeviceAttachment
- (instancetype)init NS_DESIGNATED_INITIALIZER;
@end

API_AVAILABLE(macos(11.0))
@interface VZBridgedNetworkInterface : NSObject
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@property (class, readonly) NSArray<VZBridgedNetworkInterface *> *networkInterfaces;
@property (readonly) NSString *identifier;
@property (readonly, nullable) NSString *localizedDisplayName;
@end

API_AVAILABLE(macos(11.0))
@interface VZBridgedNetworkDeviceAttachment : VZNetworkDeviceAttachment
- (instancetype)initWithInterface:(VZBridgedNetworkInterface *)interface NS_DESIGNATED_INITIALIZER;
@property (readonly) VZBridgedNetworkInterface *interface;
@end

API_AVAILABLE(macos(11.0))
@interface VZMACAddress : NSObject <NSCopying>
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
- (nullable instancetype)initWithString:(NSString *)string;
+ (instancetype)randomLocallyAdministeredAddress;
@property (readonly) NSString *string;
@end

API_AVAILABLE(macos(11.0))
@interface VZNetworkDeviceConfiguration : NSObject <NSCopying>
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@property (copy) VZMACAddress *MACAddress;
@property (nullable, strong) VZNetworkDeviceAttachment *attachment;
@end

API_AVAILABLE(macos(11.0))
@interface VZVirtioNetworkDeviceConfiguration : VZNetworkDeviceConfiguration
- (instancetype)init NS_DESIGNATED_INITIALIZER;
@end

API_AVAILABLE(macos(12.0))
@interface VZNetworkDevice : NSObject
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@property (nullable, strong) VZNetworkDeviceAttachment *attachment;
@end

// ---- Serial console ----
API_AVAILABLE(macos(11.0))
@interface VZSerialPortAttachment : NSObject
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@end

API_AVAILABLE(macos(11.0))
@interface VZFileHandleSerialPortAttachment : VZSerialPortAttachment
- (instancetype)initWithFileHandleForReading:(nullable NSFileHandle *)fileHandleForReading
                        fileHandleForWriting:(nullable NSFileHandle *)fileHandleForWriting NS_DESIGNATED_INITIALIZER;
@property (readonly, nullable, strong) NSFileHandle *fileHandleForReading;
@property (readonly, nullable, strong) NSFileHandle *fileHandleForWriting;
@end

API_AVAILABLE(macos(11.0))
@interface VZSerialPortConfiguration : NSObject <NSCopying>
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@property (nullable, strong) VZSerialPortAttachment *attachment;
@end

API_AVAILABLE(macos(11.0))
@interface VZVirtioConsoleDeviceSerialPortConfiguration : VZSerialPortConfiguration
- (instancetype)init NS_DESIGNATED_INITIALIZER;
@end

// ---- Entropy, memory balloon ----
API_AVAILABLE(macos(11.0))
@interface VZEntropyDeviceConfiguration : NSObject <NSCopying>
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@end

API_AVAILABLE(macos(11.0))
@interface VZVirtioEntropyDeviceConfiguration : VZEntropyDeviceConfiguration
- (instancetype)init NS_DESIGNATED_INITIALIZER;
@end

API_AVAILABLE(macos(11.0))
@interface VZMemoryBalloonDeviceConfiguration : NSObject <NSCopying>
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@end

API_AVAILABLE(macos(11.0))
@interface VZVirtioTraditionalMemoryBalloonDeviceConfiguration : VZMemoryBalloonDeviceConfiguration
- (instancetype)init NS_DESIGNATED_INITIALIZER;
@end

API_AVAILABLE(macos(11.0))
@interface VZMemoryBalloonDevice : NSObject
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
@end

API_AVAILABLE(macos(11.0))
@interface VZVirtioTraditionalMemoryBalloonDevice : VZMemoryBalloonDevice
@property uint64_t targetVirtualMachineMemorySize;
@end

// ---- Configuration ----
API_AVAILABLE(macos(11.0))
@interface VZVirtualMachineConfiguration : NSObject <NSCopying>
- (instancetype)init NS_DESIGNATED_INITIALIZER;
@property (class, readonly) NSUInteger minimumAllowedCPUCount;
@property (class, readonly) NSUInteger maximumAllowedCPUCount;
@property (class, readonly) uint64_t minimumAllowedMemorySize;
@property (class, readonly) uint64_t maximumAllowedMemorySize;
@property (nullable, strong) VZBootLoader *bootLoader;
@property NSUInteger CPUCount;
@property uint64_t memorySize;
@property (copy) VZPlatformConfiguration *platform API_AVAILABLE(macos(12.0));
@property (copy) NSArray<VZEntropyDeviceConfiguration *> *entropyDevices;
@property (copy) NSArray<VZMemoryBalloonDeviceConfiguration *> *memoryBalloonDevices;
@property (copy) NSArray<VZNetworkDeviceConfiguration *> *networkDevices;
@property (copy) NSArray<VZSerialPortConfiguration *> *serialPorts;
@property (copy) NSArray<VZStorageDeviceConfiguration *> *storageDevices;
@property (copy) NSArray<VZUSBControllerConfiguration *> *usbControllers API_AVAILABLE(macos(15.0));
- (BOOL)validateWithError:(NSError **)error;
@end

// ---- Virtual machine ----
API_AVAILABLE(macos(11.0))
@protocol VZVirtualMachineDelegate <NSObject>
@optional
- (void)guestDidStopVirtualMachine:(VZVirtualMachine *)virtualMachine;
- (void)virtualMachine:(VZVirtualMachine *)virtualMachine didStopWithError:(NSError *)error;
- (void)virtualMachine:(VZVirtualMachine *)virtualMachine
                 networkDevice:(VZNetworkDevice *)networkDevice
    attachmentWasDisconnectedWithError:(NSError *)error API_AVAILABLE(macos(12.0));
@end

API_AVAILABLE(macos(11.0))
@interface VZVirtualMachine : NSObject
+ (instancetype)new NS_UNAVAILABLE;
- (instancetype)init NS_UNAVAILABLE;
- (instancetype)initWithConfiguration:(VZVirtualMachineConfiguration *)configuration;
- (instancetype)initWithConfiguration:(VZVirtualMachineConfiguration *)configuration
                                queue:(dispatch_queue_t)queue NS_DESIGNATED_INITIALIZER;
@property (class, readonly, getter=isSupported) BOOL supported;
@property (readonly) VZVirtualMachineState state;
@property (weak, nullable) id<VZVirtualMachineDelegate> delegate;
@property (readonly) BOOL canStart;
@property (readonly) BOOL canPause;
@property (readonly) BOOL canResume;
@property (readonly) BOOL canRequestStop;
@property (readonly) BOOL canStop API_AVAILABLE(macos(12.0));
@property (readonly, copy) NSArray<VZMemoryBalloonDevice *> *memoryBalloonDevices;
@property (readonly, copy) NSArray<VZNetworkDevice *> *networkDevices API_AVAILABLE(macos(12.0));
@property (readonly, copy) NSArray<VZUSBController *> *usbControllers API_AVAILABLE(macos(15.0));
- (void)startWithCompletionHandler:(void (^)(NSError *_Nullable errorOrNil))completionHandler;
- (void)stopWithCompletionHandler:(void (^)(NSError *_Nullable errorOrNil))completionHandler API_AVAILABLE(macos(12.0));
- (BOOL)requestStopWithError:(NSError **)error;
@end

NS_ASSUME_NONNULL_END
