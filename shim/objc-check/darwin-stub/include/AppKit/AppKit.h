/* Stand-in for <AppKit/AppKit.h>: the declarations live in shim/objc-check/appkit-decls.h. */
#include "../../../appkit-decls.h"
