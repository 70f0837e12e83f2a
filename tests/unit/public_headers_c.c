/* SPDX-License-Identifier: Apache-2.0 */
/* ooh.h compiles alone as C (it is the API for C consumers such as CRIU). */
#include <ooh/ooh.h>

int ooh_public_header_c_size(void);
int ooh_public_header_c_size(void)
{
	return (int)sizeof(struct ooh_range) + (int)sizeof(struct ooh_collect_info);
}
