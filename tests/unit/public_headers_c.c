/* SPDX-License-Identifier: Apache-2.0 */
/* ooh.h and self.h compile alone as C (the API for C consumers such as CRIU
 * and garbage collectors). */
#include <ooh/ooh.h>
#include <ooh/self.h>

int ooh_public_header_c_size(void);
int ooh_public_header_c_size(void)
{
    return (int)sizeof(struct ooh_range) + (int)sizeof(struct ooh_collect_info) +
           (int)sizeof(struct ooh_session);
}
