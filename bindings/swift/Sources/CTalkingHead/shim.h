// The one C header of the runtime, shared with every other binding.
#include "../../../include/talkinghead.h"
