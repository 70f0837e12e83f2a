// SPDX-License-Identifier: Apache-2.0
// A thin C++ wrapper of the libooh C API: RAII ownership of the client and
// collect() into a vector. Errors are returned, not thrown.
#pragma once

#include "ooh.h"

#include <string>
#include <vector>

namespace ooh {

class Client {
public:
    Client() = default;
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;
    Client(Client &&o) noexcept : c_(o.c_) { o.c_ = nullptr; }
    ~Client() { ooh_close(c_); }

    // 0 or a negative errno; error() explains.
    int connect(const char *socket_path = nullptr)
    {
        ooh_close(c_);
        c_ = nullptr;
        int r = ooh_connect(socket_path, &c_);
        if (r < 0 && c_)
            error_ = ooh_last_error(c_);
        return r;
    }
    std::string error() const { return c_ ? std::string(ooh_last_error(c_)) : error_; }

    int track(pid_t pid, const char *backend = nullptr, uint64_t *start_time = nullptr)
    {
        return ooh_track(c_, pid, backend, start_time);
    }
    int untrack(pid_t pid) { return ooh_untrack(c_, pid); }
    int stats(pid_t pid, struct ooh_stats *out) { return ooh_get_stats(c_, pid, out); }

    // Get-and-reset into `out` (replaced).
    int collect(pid_t pid, std::vector<ooh_range> &out, ooh_collect_info *info = nullptr,
                uint64_t start_time = 0)
    {
        out.clear();
        ooh_collect_info local;
        int r = ooh_collect_begin(c_, pid, start_time, info ? info : &local);
        if (r < 0)
            return r;
        ooh_range buf[512];
        long n;
        while ((n = ooh_collect_next(c_, buf, 512)) > 0)
            out.insert(out.end(), buf, buf + n);
        return n < 0 ? static_cast<int>(n) : 0;
    }

    ooh_client *get() const { return c_; }

private:
    ooh_client *c_ = nullptr;
    std::string error_;
};

} // namespace ooh
