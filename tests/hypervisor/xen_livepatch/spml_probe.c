// SPDX-License-Identifier: Apache-2.0
/*
 * spml_probe.c - asks the running Xen for Shadow PML from dom0, the way a
 * guest module does: HYPERVISOR_hvm_op(OOH_HVMOP_spml, QUERY), through
 * /dev/xen/privcmd. Runs inside the Xen boot test's dom0.
 *
 * usage: ooh-spml-probe query|now
 *   query: prints "OOH-PROBE query rc=N ..." for QUERY, then the answers to
 *          a bad magic and to REGISTER_RING (the payload's refusals), then
 *          to other HVMOP sub-ops, which must reach Xen's own do_hvm_op
 *          whether or not the payload has replaced it.
 *   now:   prints CLOCK_MONOTONIC in ns (busybox date has no %N).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ooh/ooh_spml_abi.h>

/* Linux's privcmd UAPI (<xen/privcmd.h> needs headers bookworm lacks). */
struct privcmd_hypercall {
	uint64_t op;
	uint64_t arg[5];
};
#define IOCTL_PRIVCMD_HYPERCALL _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall))

#define HYPERVISOR_HVM_OP 34

/* public/hvm/hvm_op.h */
#define HVMOP_get_param 1
#define HVMOP_get_time	10
#define HVMOP_unused	0xef /* no such sub-op */
#define DOMID_SELF	0x7ff0
#define DOMID_ABSENT	0x7d00 /* a domain id nobody has here */
struct xen_hvm_param {
	uint16_t domid;
	uint16_t pad;
	uint32_t index;
	uint64_t value;
};

/* One hvm_op call; returns 0 or -errno as Xen answered it. */
static long hvm_op(int fd, unsigned int sub_op, void *arg)
{
	struct privcmd_hypercall call = {
		.op = HYPERVISOR_HVM_OP,
		.arg = {sub_op, (uint64_t)(uintptr_t)arg},
	};
	long rc = ioctl(fd, IOCTL_PRIVCMD_HYPERCALL, &call);

	return rc < 0 ? -errno : rc;
}

static long spml_call(int fd, struct ooh_spml_op *op)
{
	return hvm_op(fd, OOH_HVMOP_spml, op);
}

/* Sub-ops the payload passes on: the same answers with and without it. */
static void other_sub_ops(int fd, void *page)
{
	struct xen_hvm_param *param = page;
	uint64_t *now = page;
	long rc;

	*now = 0;
	rc = hvm_op(fd, HVMOP_get_time, now);
	printf("OOH-PROBE get-time rc=%ld now=%llu\n", rc, (unsigned long long)*now);
	memset(param, 0, sizeof(*param));
	param->domid = DOMID_ABSENT;
	printf("OOH-PROBE get-param-absent rc=%ld\n", hvm_op(fd, HVMOP_get_param, param));
	param->domid = DOMID_SELF;
	printf("OOH-PROBE get-param-self rc=%ld\n", hvm_op(fd, HVMOP_get_param, param));
	printf("OOH-PROBE unused-sub-op rc=%ld\n", hvm_op(fd, HVMOP_unused, page));
}

static void init_op(struct ooh_spml_op *op, uint16_t cmd)
{
	memset(op, 0, sizeof(*op));
	op->magic = OOH_SPML_MAGIC;
	op->version = OOH_SPML_VERSION;
	op->cmd = cmd;
	op->vcpu = OOH_SPML_VCPU_SELF;
}

static int query(void)
{
	int fd = open("/dev/xen/privcmd", O_RDWR | O_CLOEXEC);
	struct ooh_spml_op *op;
	long rc;

	if (fd < 0) {
		printf("OOH-PROBE error open /dev/xen/privcmd: %s\n", strerror(errno));
		return 1;
	}
	/* Xen reads the argument from dom0's memory: it must be present. */
	op = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE, -1, 0);
	if (op == MAP_FAILED) {
		printf("OOH-PROBE error mmap: %s\n", strerror(errno));
		return 1;
	}

	init_op(op, OOH_SPML_CMD_QUERY);
	rc = spml_call(fd, op);
	if (rc == 0)
		printf("OOH-PROBE query rc=0 magic=%#x version=%u features=%#x "
		       "virq=%u max_data_frames=%u pml_entries=%u\n",
		       op->u.query.magic, op->u.query.version, op->u.query.features,
		       op->u.query.virq, op->u.query.max_data_frames, op->u.query.pml_entries);
	else
		printf("OOH-PROBE query rc=%ld\n", rc);

	init_op(op, OOH_SPML_CMD_QUERY);
	op->magic = ~OOH_SPML_MAGIC;
	printf("OOH-PROBE bad-magic rc=%ld\n", spml_call(fd, op));

	init_op(op, OOH_SPML_CMD_REGISTER_RING);
	printf("OOH-PROBE register rc=%ld\n", spml_call(fd, op));

	other_sub_ops(fd, op);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	struct timespec ts;

	if (argc == 2 && strcmp(argv[1], "query") == 0)
		return query();
	if (argc == 2 && strcmp(argv[1], "now") == 0) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		printf("%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
		return 0;
	}
	fprintf(stderr, "usage: %s query|now\n", argv[0]);
	return 2;
}
