// SPDX-License-Identifier: Apache-2.0
/*
 * ooh_plugin.so: answers CRIU's memory tracking hooks (criu --ooh, see
 * patches/criu-4.1.1/) from oohd, for kernels without soft-dirty.
 *
 * Per dump: TRACK_MEM starts tracking each task before CRIU seizes it (a task
 * seen for the first time is dumped in full); the first DIRTY_PAGES call for
 * a frozen task collects its written set once (get-and-reset) and every VMA is
 * answered from that cache; RESET_DIRTY_TRACK collects if nothing was asked
 * (so the next interval starts at this dump) and records the closed epoch in
 * the images, so that the next dump can prove its set follows directly.
 * Any doubt dumps the whole VMA; any failure fails the dump.
 */
#define LOG_PREFIX "ooh: "

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "criu-plugin.h"
#include "criu-log.h"

#include <ooh/ooh.h>

#include "ooh_track.h"

struct ooh_task {
	int pid;       /* in CRIU's PID namespace */
	pid_t ooh_pid; /* the same process in oohd's PID namespace */
	uint64_t start_time;
	struct ooh_session session; /* as oohd named it when this dump tracked */
	bool untracked;	  /* gone, a zombie (leader) or its session replaced: every page changed */
	bool tracked_now; /* tracking started by this dump: no usable history */
	bool collected;	  /* the set of this dump is in `set` */
	bool exact;	  /* `set` may be used; otherwise every page is dirty */
	bool all_changes; /* `set` also holds what changed without a write */
	struct ooh_rangeset set;
};

static struct {
	ooh_client *client;
	struct ooh_task *tasks;
	size_t nr_tasks;
	size_t cap_tasks;
	uint64_t page_size;
} ooh;

static const char *socket_path(void)
{
	const char *env = getenv(OOH_SOCKET_ENV);

	return env && *env ? env : OOH_DEFAULT_SOCKET_PATH;
}

static int ooh_connect_once(void)
{
	int ret;

	if (ooh.client)
		return 0;

	ret = ooh_connect(NULL, &ooh.client);
	if (ret < 0) {
		pr_err("--ooh needs oohd (socket %s, set by $%s): %s\n", socket_path(),
		       OOH_SOCKET_ENV, ooh.client ? ooh_last_error(ooh.client) : strerror(-ret));
		ooh_close(ooh.client);
		ooh.client = NULL;
		return ret;
	}
	return 0;
}

static struct ooh_task *find_task(int pid)
{
	size_t i;

	for (i = 0; i < ooh.nr_tasks; i++)
		if (ooh.tasks[i].pid == pid)
			return &ooh.tasks[i];
	return NULL;
}

static struct ooh_task *add_task(int pid)
{
	struct ooh_task *t;

	if (ooh.nr_tasks == ooh.cap_tasks) {
		size_t cap = ooh.cap_tasks ? ooh.cap_tasks * 2 : 16;

		t = realloc(ooh.tasks, cap * sizeof(*t));
		if (!t)
			return NULL;
		ooh.tasks = t;
		ooh.cap_tasks = cap;
	}
	t = &ooh.tasks[ooh.nr_tasks++];
	memset(t, 0, sizeof(*t));
	t->pid = pid;
	ooh_rangeset_init(&t->set);
	return t;
}

static int read_proc_stat(int pid, char *state, uint64_t *start_time)
{
	char path[64], line[1024];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, line, sizeof(line) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? -errno : -EIO;
	line[n] = '\0';
	return ooh_parse_proc_stat(line, state, start_time);
}

/* Whether this criu process is pid's tracer (it seized it already). */
static bool traced_by_criu(int pid)
{
	char path[64], line[256];
	bool ours = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "TracerPid:", 10) == 0) {
			ours = atoi(line + 10) == getpid();
			break;
		}
	}
	fclose(f);
	return ours;
}

static int ooh_track_mem(int pid)
{
	struct ooh_task *t;
	char state = '?';
	int pidfd, ret;

	ret = ooh_connect_once();
	if (ret < 0 || pid == 0)
		return ret;

	if (find_task(pid))
		return 0;
	t = add_task(pid);
	if (!t)
		return -ENOMEM;

	ret = read_proc_stat(pid, &state, &t->start_time);
	if (ret < 0 || state == 'Z' || state == 'X') {
		/*
		 * Gone, a zombie, or a zombie leader whose threads still run:
		 * nothing to inject into. CRIU finds out what is left; any
		 * memory it dumps is dumped in full.
		 */
		pr_info("%d can't be tracked (%s): its pages are dumped in full\n", pid,
			ret < 0 ? strerror(-ret) : "zombie");
		t->untracked = true;
		return 0;
	}

	/*
	 * By pidfd, so that oohd finds the process whatever PID namespace
	 * CRIU runs in. A process still tracked since an earlier dump keeps
	 * its session and epochs (ooh_track_session() returns 1); a new or lost
	 * session starts now, and this dump saves all its pages.
	 */
	pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		pr_perror("pidfd_open(%d)", pid);
		return -errno;
	}
	ret = ooh_track_session(ooh.client, 0, pidfd, NULL, &t->session);
	close(pidfd);
	if (ret == -ETIMEDOUT) {
		/*
		 * It can't be stopped now (a vfork() parent waiting for its
		 * child): no history for it, so every page of it is dumped.
		 */
		pr_warn("oohd can't track %d now (%s): its pages are dumped in full\n", pid,
			ooh_last_error(ooh.client));
		t->untracked = true;
		return 0;
	}
	if (ret == -EBUSY && traced_by_criu(pid)) {
		/*
		 * Seized by this criu before it could be tracked: with
		 * --freeze-cgroup, a task forked into the cgroup after CRIU
		 * let plugins track its processes and before the freeze. No
		 * history for it: every page of it is dumped.
		 */
		pr_warn("%d was seized before oohd could track it (forked while the cgroup was "
			"being frozen?): its pages are dumped in full\n",
			pid);
		t->untracked = true;
		return 0;
	}
	if (ret < 0) {
		pr_err("oohd can't track %d: %s\n", pid, ooh_last_error(ooh.client));
		return ret;
	}
	t->ooh_pid = t->session.pid;
	t->start_time = t->session.start_time;
	t->tracked_now = ret == 0;
	if (!t->tracked_now) {
		pr_info("%d is tracked by oohd as %d (%s backend, epoch %llu)\n", pid, t->ooh_pid,
			t->session.backend, (unsigned long long)t->session.epoch);
		return 0;
	}
	pr_info("started tracking %d (%s backend): dumped in full this time\n", pid,
		t->session.backend);
	return 0;
}

static int read_parent_state(int pid, struct ooh_task_state *st)
{
	char name[64], buf[256];
	ssize_t n;
	int fd;

	snprintf(name, sizeof(name), "parent/" OOH_STATE_FILE_FMT, pid);
	fd = openat(criu_get_image_dir(), name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return ooh_state_parse(buf, st);
}

static int write_state(int pid, const struct ooh_task_state *st)
{
	char name[64], buf[256];
	int fd, len;

	len = ooh_state_format(buf, sizeof(buf), st);
	if (len < 0)
		return len;
	snprintf(name, sizeof(name), OOH_STATE_FILE_FMT, pid);
	fd = openat(criu_get_image_dir(), name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, buf, len) != len) {
		pr_perror("can't write %s in the images directory", name);
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	close(fd);
	return 0;
}

/* Get-and-reset of t's written set, while t is frozen. */
static int collect(struct ooh_task *t)
{
	struct ooh_collect_info info;
	struct ooh_task_state parent, now;
	bool have_parent;
	struct ooh_range buf[256];
	long n;
	int ret;

	ooh_rangeset_free(&t->set);
	ret = ooh_collect_session_begin(ooh.client, &t->session, &info);
	if (ret == -ESTALE) {
		/*
		 * Not the session this dump tracked (tracked again since, or an
		 * oohd that names none): its set, and untracking it on failure,
		 * are not ours. No state is recorded, so the next dump starts
		 * over too.
		 */
		pr_warn("can't collect %d from the session this dump saw (%s): dumping all its "
			"pages\n",
			t->pid, ooh_last_error(ooh.client));
		t->untracked = true;
		t->exact = false;
		return 0;
	}
	if (ret < 0) {
		pr_err("oohd can't collect the written pages of %d: %s; its tracking is lost, "
		       "so this dump can't be incremental: start a new chain\n",
		       t->pid, ooh_last_error(ooh.client));
		return ret;
	}
	while ((n = ooh_collect_next(ooh.client, buf, sizeof(buf) / sizeof(buf[0]))) > 0) {
		ret = ooh_rangeset_append(&t->set, buf, n, info.page_size);
		if (ret < 0) {
			pr_err("oohd sent a malformed page set for %d\n", t->pid);
			return ret;
		}
	}
	if (n < 0) {
		pr_err("collect of %d failed: %s\n", t->pid, ooh_last_error(ooh.client));
		return (int)n;
	}
	ooh.page_size = info.page_size;
	t->all_changes = info.flags & OOH_COLLECT_ALL_CHANGES;

	now.start_time = t->start_time;
	now.session = t->session.id;
	now.epoch = info.epoch;
	have_parent = read_parent_state(t->pid, &parent) == 0;
	t->exact = ooh_set_is_exact(t->tracked_now, have_parent ? &parent : NULL, &now);
	if (!t->exact && !t->tracked_now)
		pr_warn("no tracking history of %d matches the parent images (epoch %llu): "
			"dumping all its pages\n",
			t->pid, (unsigned long long)info.epoch);
	t->collected = true;
	pr_info("%d: %llu pages written since the last dump (epoch %llu)\n", t->pid,
		(unsigned long long)ooh_rangeset_pages(&t->set, info.page_size),
		(unsigned long long)info.epoch);
	return write_state(t->pid, &now);
}

static int ooh_dirty_pages(int pid, uint64_t start, uint64_t end, uint64_t *bitmap)
{
	uint64_t page_size = (uint64_t)sysconf(_SC_PAGESIZE);
	struct ooh_task *t = find_task(pid);
	int ret;

	if (!t || t->untracked) {
		/* Nothing is known: everything changed. */
		if (!t)
			pr_warn("%d was not tracked: dumping all its pages\n", pid);
		ooh_bitmap_fill(bitmap, start, end, page_size);
		return CR_PLUGIN_DIRTY_PAGES_ALL_CHANGES;
	}
	if (!t->collected) {
		ret = collect(t);
		if (ret < 0)
			return ret;
	}
	if (!t->exact || ooh.page_size != page_size) {
		ooh_bitmap_fill(bitmap, start, end, page_size);
		return CR_PLUGIN_DIRTY_PAGES_ALL_CHANGES;
	}
	ooh_rangeset_to_bitmap(&t->set, start, end, page_size, bitmap);
	/*
	 * Where oohd vouches that discarded pages are in the set too, CRIU
	 * takes the presence of the other pages from the parent images
	 * instead of scanning the whole VMA while the task is frozen.
	 */
	return t->all_changes ? CR_PLUGIN_DIRTY_PAGES_ALL_CHANGES : 0;
}

static int ooh_reset_dirty_track(int pid)
{
	struct ooh_task *t = find_task(pid);
	int ret = 0;

	if (!t || t->untracked)
		return 0;
	/* Pages were dumped in full: close the epoch here, still frozen. */
	if (!t->collected)
		ret = collect(t);
	ooh_rangeset_free(&t->set);
	return ret;
}

static int ooh_plugin_init(int stage)
{
	(void)stage;
	/* Nothing until CRIU calls a hook: only --ooh makes it do so. */
	return 0;
}

static void ooh_plugin_exit(int stage, int ret)
{
	size_t i;

	for (i = 0; i < ooh.nr_tasks; i++) {
		struct ooh_task *t = &ooh.tasks[i];

		/*
		 * A failed dump leaves no images to be a parent, but its
		 * collects ended epochs: drop tracking so that the next dump
		 * starts over in full instead of trusting a broken history.
		 */
		if (ret && ooh.client && !t->untracked && (t->collected || t->tracked_now)) {
			if (ooh_untrack(ooh.client, t->ooh_pid) < 0)
				pr_warn("can't stop tracking %d: %s\n", t->pid,
					ooh_last_error(ooh.client));
		}
		ooh_rangeset_free(&t->set);
	}
	(void)stage;
	free(ooh.tasks);
	ooh_close(ooh.client);
	memset(&ooh, 0, sizeof(ooh));
}

/*
 * The hooks this plugin uses end at RESET_DIRTY_TRACK: declaring no more than
 * that keeps the plugin loadable by any CRIU that knows these hooks.
 */
cr_plugin_desc_t CR_PLUGIN_DESC = {
	.name = "ooh",
	.init = ooh_plugin_init,
	.exit = ooh_plugin_exit,
	.version = CRIU_PLUGIN_VERSION,
	.max_hooks = CR_PLUGIN_HOOK__RESET_DIRTY_TRACK + 1,
	.hooks =
		{
			[CR_PLUGIN_HOOK__TRACK_MEM] = ooh_track_mem,
			[CR_PLUGIN_HOOK__DIRTY_PAGES] = ooh_dirty_pages,
			[CR_PLUGIN_HOOK__RESET_DIRTY_TRACK] = ooh_reset_dirty_track,
		},
};
