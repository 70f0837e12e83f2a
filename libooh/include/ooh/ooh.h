/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libooh: C client API of oohd, the dirty-page tracking daemon.
 *
 * Every function returns 0 (or a count) on success and a negative errno on
 * failure; ooh_last_error() then describes what failed. A client is not
 * thread-safe: use one per thread. Nothing in this API aborts or throws.
 */
#ifndef OOH_OOH_H
#define OOH_OOH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OOH_DEFAULT_SOCKET_PATH "/run/oohd/oohd.sock"
/* Environment variable that overrides the default socket path. */
#define OOH_SOCKET_ENV "OOH_SOCKET"
/* How long a call waits for oohd's answer before it fails with -ETIMEDOUT
 * (and closes the connection); see ooh_set_reply_timeout(). */
#define OOH_DEFAULT_REPLY_TIMEOUT_MS 60000u

typedef struct ooh_client ooh_client;

/* A written range of the target's address space: [start, end), byte
 * addresses, page aligned. */
struct ooh_range {
    uint64_t start;
    uint64_t end;
    uint32_t flags; /* OOH_RANGE_* */
    uint32_t reserved;
};

/* The range was reported as a whole because exact tracking was not possible
 * (a new mapping, a mapping the backend cannot track, discarded pages). */
#define OOH_RANGE_WHOLESALE (1u << 0)

/* ooh_collect_info.flags: the set holds every page whose contents changed
 * since the previous collect, also without a write (discarded by madvise):
 * a page outside it has the contents it had then, present or not. Without
 * it, only the written pages are sure to be in the set. */
#define OOH_COLLECT_ALL_CHANGES (1u << 0)

struct ooh_collect_info {
    uint64_t epoch; /* the epoch this set closes */
    uint32_t page_size;
    uint32_t flags; /* OOH_COLLECT_* */
    uint64_t total_ranges;
    uint64_t total_pages;
};

struct ooh_stats {
    char backend[32];
    uint64_t epoch;
    uint64_t collects;
    uint64_t pages_reported;
    uint64_t pages_wholesale;
    uint64_t last_collect_ns;
    uint64_t last_collect_pages;
    uint64_t tracked_since_ns;
    uint64_t tracked_bytes;
    int alive;
};

/* A tracking session, as oohd names it (see ooh_track_session()). */
struct ooh_session {
    /* Unique (random): never the id of another session, even of an
	 * earlier oohd. The same id later means tracking went on without a
	 * break in between. 0 from an oohd too old to name sessions. */
    uint64_t id;
    uint64_t start_time; /* the process identity (see ooh_track()) */
    uint64_t epoch;      /* the epoch the next collect closes */
    pid_t pid;           /* the process as oohd knows it */
    int already_tracked; /* 1: the session existed before this call */
    char backend[32];
};

struct ooh_backend_info {
    char name[32];
    int available;
    int is_default;
    char reason[256];
};

/* Connects and performs the version handshake. socket_path may be NULL:
 * $OOH_SOCKET, else OOH_DEFAULT_SOCKET_PATH. On failure *out is still set
 * (unless out is NULL) so that ooh_last_error() can explain; close it. */
int ooh_connect(const char *socket_path, ooh_client **out);
void ooh_close(ooh_client *client);
/* Sets how long each later call waits for oohd (0: forever; the default is
 * OOH_DEFAULT_REPLY_TIMEOUT_MS, also during ooh_connect()). A call that
 * times out returns -ETIMEDOUT and closes the connection. */
int ooh_set_reply_timeout(ooh_client *client, unsigned timeout_ms);
/* Message of the last failure on this client ("" if none). Valid until the
 * next call on the client. */
const char *ooh_last_error(const ooh_client *client);

/* Starts tracking pid with the named backend (NULL or "" for the default).
 * The first epoch starts now. start_time (may be NULL) receives the
 * process identity to pass to ooh_collect_begin(). Returns 0 when tracking
 * started, 1 when the process was already tracked (the session and its
 * epoch are kept), or a negative errno. */
int ooh_track(ooh_client *client, pid_t pid, const char *backend, uint64_t *start_time);
/* The same for the process of pidfd (from pidfd_open()), for clients in
 * another PID namespace than oohd (CRIU in a container): *tracked_pid
 * receives the process's pid as oohd knows it, to use with every other call
 * of this API. */
int ooh_track_pidfd(ooh_client *client, int pidfd, const char *backend, pid_t *tracked_pid,
                    uint64_t *start_time);
/* ooh_track() or, when pidfd >= 0, ooh_track_pidfd() (pid is then
 * ignored), that describes the session in *session (may be NULL). Returns
 * what they return. */
int ooh_track_session(ooh_client *client, pid_t pid, int pidfd, const char *backend,
                      struct ooh_session *session);
int ooh_untrack(ooh_client *client, pid_t pid);

/*
 * Collect = get-and-reset: every page written since the previous collect (or
 * since track) is in the set, and tracking is re-armed. The set is final once
 * ooh_collect_begin() returns; read it with ooh_collect_next() until it
 * returns 0:
 *
 *   ooh_collect_begin(c, pid, 0, &info);
 *   while ((n = ooh_collect_next(c, buf, cap)) > 0) use(buf, n);
 *   if (n < 0) fail;
 *
 * start_time: 0, or the value from ooh_track() to refuse a reused PID.
 */
int ooh_collect_begin(ooh_client *client, pid_t pid, uint64_t start_time,
                      struct ooh_collect_info *info);
/* ooh_collect_begin() for the process of *session, refused with -ESTALE
 * (nothing collected) unless oohd still tracks it with that very session:
 * a set is never taken from a session the caller does not know. */
int ooh_collect_session_begin(ooh_client *client, const struct ooh_session *session,
                              struct ooh_collect_info *info);
/* Fills up to cap ranges (ascending, non-overlapping); returns how many, 0 at
 * the end of the set, or a negative errno. */
long ooh_collect_next(ooh_client *client, struct ooh_range *buf, size_t cap);

int ooh_get_stats(ooh_client *client, pid_t pid, struct ooh_stats *out);
/* Fills up to cap entries; returns the number of backends the daemon knows
 * (which may exceed cap). */
long ooh_backends(ooh_client *client, struct ooh_backend_info *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* OOH_OOH_H */
