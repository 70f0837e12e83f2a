// SPDX-License-Identifier: Apache-2.0
// The PML-ring path of libooh self-tracking (ooh/self.h, OOH_SELF_PML): oohd
// tracks the calling process with its pml-ring backend (the OoH guest
// module's ring, SPML or EPML) and each collect asks it for the set, clipped
// to the caller's tracked windows.
#pragma once

#include "ooh/self.h"
#include "page_range.h"

#include <pthread.h>
#include <string>
#include <vector>

namespace ooh {

class SelfPml {
public:
    // Opens the session; on failure returns a negative errno and sets *error.
    static int open(SelfPml **out, std::string *error);
    ~SelfPml();
    SelfPml(const SelfPml &) = delete;
    SelfPml &operator=(const SelfPml &) = delete;

    // Get-and-reset through oohd, clipped to `windows` (sorted, disjoint):
    // calls sink with ascending ranges in batches. Allocates nothing in the
    // calling thread (see self_pml.cpp). Returns the pages reported or a
    // negative errno (then *error says why).
    long collect(const std::vector<PageRange> &windows, ooh_self_sink sink, void *ctx,
                 std::string *error);

    // In a child of fork(): forget the parent's thread and session, so that
    // the destructor neither joins nor untracks them.
    void abandon() { abandoned_ = true; }

private:
    SelfPml() = default;
    static void *serve(void *arg);
    void collectHere(); // in the worker

    ooh_client *client_ = nullptr;
    ooh_session session_{};
    bool abandoned_ = false;

    pthread_t worker_{};
    bool worker_started_ = false;
    pthread_mutex_t mu_ = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv_ = PTHREAD_COND_INITIALIZER;
    bool request_ = false, done_ = false, stop_ = false;
    // The request's input and output, handed over under mu_.
    const std::vector<PageRange> *windows_ = nullptr;
    std::vector<ooh_range> result_; // clipped, ascending
    long status_ = 0;
    std::string error_;
};

} // namespace ooh
