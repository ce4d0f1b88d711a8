/* Shared shorthand of the runtime test programs (include after <cmocka.h>):
 * OK(call) fails the test with the call, its return code and the message of
 * its ps_err, which the call names `&e_` (or E); FREE_TENSORS(&a, &b, ...)
 * frees every tensor named. */
#ifndef PS_TESTS_RT_TESTUTIL_H
#define PS_TESTS_RT_TESTUTIL_H

#include "common/err.h"
#include "real/rt.h"

#define OK(call)                                                                                  \
    do {                                                                                          \
        ps_err e_ = {0};                                                                          \
        int rc_ = (call);                                                                         \
        if (rc_)                                                                                  \
            fail_msg("%s failed (%d): %s", #call, rc_, e_.msg);                                   \
    } while (0)
#define E (&e_)

#define FREE_TENSORS(...)                                                                         \
    do {                                                                                          \
        rt_tensor *all_[] = {__VA_ARGS__};                                                        \
        for (size_t i_ = 0; i_ < sizeof all_ / sizeof *all_; i_++)                                \
            rt_tensor_free(all_[i_]);                                                             \
    } while (0)

#endif
