/* scikit-learn's bundled handwritten digits (tests/fixtures/digits.csv.gz,
 * 1797 rows of 65 comma-separated integers: 8 x 8 pixels in 0..16, then
 * the label 0..9; UCI optical recognition of handwritten digits), read with
 * zlib.  Malformed data is PS_EINPUT naming the file and the line. */
#ifndef PS_REAL_DATA_DIGITS_H
#define PS_REAL_DATA_DIGITS_H

#include <stdint.h>

#include "common/err.h"

#define DIGITS_FEATURES 64
#define DIGITS_CLASSES 10
#define DIGITS_FIXTURE "tests/fixtures/digits.csv.gz"

typedef struct digits_data {
    int64_t n;  /* rows */
    double *x;  /* [n, 64], pixel / 16 */
    int32_t *y; /* [n], 0..9 */
} digits_data;

/* path NULL: DIGITS_FIXTURE (relative to the repository root).  Plain text
 * (not gzip) is read too (gzread passes it through). */
int digits_load(const char *path, digits_data *d, ps_err *e);
void digits_free(digits_data *d);

#endif
