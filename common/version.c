#include "util.h"
#include "version.h" /* generated: build/version.h */

const char ps_version[] = "0.1.0";
const char ps_git_commit[] = PS_GIT_COMMIT;
