/* Stand-in for <Virtualization/Virtualization.h>: the declarations live in shim/objc-check/vz-decls.h. */
#include "../../../vz-decls.h"
