#pragma once
// LBFGSpp (a third-party header) with its warnings silenced, so that -Wall -Wextra -Werror
// applies to mlnc's code only. Include this instead of <LBFGS.h>.

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#endif
#include <LBFGS.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
