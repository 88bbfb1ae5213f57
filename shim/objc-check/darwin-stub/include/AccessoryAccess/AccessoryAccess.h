/* Stand-in for <AccessoryAccess/AccessoryAccess.h> (macOS 27 SDK): declarations in vz-decls.h. */
#include "../../../aa-decls.h"
