// SPDX-License-Identifier: Apache-2.0
// Self-tracking through oohd's pml-ring backend (libooh/self_pml.h).
//
// A collector calls ooh_self_collect() with its other threads stopped,
// possibly inside malloc with an arena lock held, so the calling thread must
// not allocate; the client protocol does (encoding, decoding). The exchange
// with oohd therefore runs in a worker thread of this handle, which no
// collector stops, and the calling thread only waits on a condition
// variable and hands the result to the sink. The worker allocates; glibc
// gives a thread its own arena while there are fewer threads than arenas
// (8 per core), so it does not wait for a stopped thread's lock in
// practice; a program with more threads than that could in principle.
#include "self_pml.h"

#include "ooh/self.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <new>
#include <sys/stat.h>
#include <unistd.h>

namespace ooh {

namespace {

constexpr const char *kCtlDevice = "/dev/ooh-ctl";
constexpr size_t kBatch = 256;

} // namespace

int SelfPml::open(SelfPml **out, std::string *error)
{
    *out = nullptr;
    struct stat st;
    if (::stat(kCtlDevice, &st) != 0) {
        *error = "the OoH guest module is not loaded (/dev/ooh-ctl absent): the PML ring needs "
                 "it, with Xen SPML or the qemu-pml device";
        return -ENODEV;
    }
    auto *p = new (std::nothrow) SelfPml;
    if (!p)
        return -ENOMEM;
    int r = ooh_connect(nullptr, &p->client_);
    if (r < 0) {
        *error = std::string("connecting to oohd for the PML ring: ") + ooh_last_error(p->client_) +
                 " (is oohd running? start it, or set OOH_SOCKET)";
        delete p;
        return r;
    }
    r = ooh_track_session(p->client_, ::getpid(), -1, "pml-ring", &p->session_);
    if (r == 1) {
        // Two collectors of one session would take each other's pages.
        *error = "oohd already tracks this process (another handle or client): a second "
                 "collector would take its pages; close the other first";
        p->abandoned_ = true; // not ours to untrack
        delete p;
        return -EBUSY;
    }
    if (r < 0) {
        *error = std::string("oohd's pml-ring backend refused this process: ") +
                 ooh_last_error(p->client_);
        p->abandoned_ = true;
        delete p;
        return r;
    }
    // The worker takes no signal (a collector's stop signal above all).
    sigset_t all, old;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
    int perr = ::pthread_create(&p->worker_, nullptr, serve, p);
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (perr != 0) {
        *error = std::string("starting the PML worker thread: ") + std::strerror(perr);
        delete p;
        return -perr;
    }
    p->worker_started_ = true;
    *out = p;
    return 0;
}

SelfPml::~SelfPml()
{
    if (abandoned_) {
        // A child of fork(): the parent's worker does not exist here, and
        // the session is the parent's. Only the socket copy closes.
        ooh_close(client_);
        return;
    }
    if (worker_started_) {
        ::pthread_mutex_lock(&mu_);
        stop_ = true;
        ::pthread_cond_broadcast(&cv_);
        ::pthread_mutex_unlock(&mu_);
        ::pthread_join(worker_, nullptr);
    }
    if (client_ && session_.pid)
        ooh_untrack(client_, session_.pid);
    ooh_close(client_);
}

void *SelfPml::serve(void *arg)
{
    auto *p = static_cast<SelfPml *>(arg);
    ::pthread_mutex_lock(&p->mu_);
    for (;;) {
        while (!p->request_ && !p->stop_)
            ::pthread_cond_wait(&p->cv_, &p->mu_);
        if (p->stop_)
            break;
        p->request_ = false;
        // The caller waits for done_ and touches nothing meanwhile.
        ::pthread_mutex_unlock(&p->mu_);
        p->collectHere();
        ::pthread_mutex_lock(&p->mu_);
        p->done_ = true;
        ::pthread_cond_broadcast(&p->cv_);
    }
    ::pthread_mutex_unlock(&p->mu_);
    return nullptr;
}

void SelfPml::collectHere()
{
    result_.clear();
    status_ = 0;
    struct ooh_collect_info info;
    int r = ooh_collect_session_begin(client_, &session_, &info);
    if (r < 0) {
        error_ = std::string("collect through oohd (pml-ring): ") + ooh_last_error(client_);
        status_ = r;
        return;
    }
    const std::vector<PageRange> &windows = *windows_;
    struct ooh_range buf[kBatch];
    long n;
    while ((n = ooh_collect_next(client_, buf, kBatch)) > 0) {
        // Both lists ascend: clip each range to the windows it meets.
        for (long i = 0; i < n; ++i) {
            auto w = std::upper_bound(windows.begin(), windows.end(), buf[i].start,
                                      [](uint64_t a, const PageRange &x) { return a < x.end; });
            for (; w != windows.end() && w->start < buf[i].end; ++w) {
                uint64_t start = std::max(w->start, buf[i].start);
                uint64_t end = std::min(w->end, buf[i].end);
                if (!result_.empty() && result_.back().end == start &&
                    result_.back().flags == buf[i].flags)
                    result_.back().end = end;
                else
                    result_.push_back({start, end, buf[i].flags, 0});
            }
        }
    }
    if (n < 0) {
        // The set was final at begin, but part of it is lost to us: the
        // caller must take everything.
        error_ = std::string("reading the set from oohd (pml-ring): ") + ooh_last_error(client_);
        status_ = n;
    }
}

long SelfPml::collect(const std::vector<PageRange> &windows, ooh_self_sink sink, void *ctx,
                      std::string *error)
{
    ::pthread_mutex_lock(&mu_);
    windows_ = &windows;
    done_ = false;
    request_ = true;
    ::pthread_cond_broadcast(&cv_);
    while (!done_)
        ::pthread_cond_wait(&cv_, &mu_);
    ::pthread_mutex_unlock(&mu_);
    if (status_ < 0) {
        *error = error_;
        return status_;
    }
    const long page = ::sysconf(_SC_PAGESIZE);
    long pages = 0;
    for (size_t i = 0; i < result_.size(); i += kBatch) {
        size_t count = std::min(kBatch, result_.size() - i);
        for (size_t j = i; j < i + count; ++j)
            pages += static_cast<long>((result_[j].end - result_[j].start) / page);
        sink(ctx, result_.data() + i, count);
    }
    return pages;
}

} // namespace ooh
