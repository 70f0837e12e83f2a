// SPDX-License-Identifier: Apache-2.0
// Result<T>: a value or an error (positive errno plus a message), in the
// shape of std::expected. Used above the -errno syscall wrappers.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace ooh {

struct Error {
    int code = 0; // positive errno
    std::string message;

    static Error fromErrno(int err, std::string what)
    {
        if (err < 0)
            err = -err;
        return Error{err, std::move(what) + ": " + std::strerror(err)};
    }
};

template <typename T> class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}
    Result(Error error) : v_(std::move(error)) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T &value() & { return std::get<0>(v_); }
    const T &value() const & { return std::get<0>(v_); }
    T &&value() && { return std::get<0>(std::move(v_)); }
    T &operator*() & { return value(); }
    T *operator->() { return &value(); }
    const T *operator->() const { return &value(); }

    const Error &error() const { return std::get<1>(v_); }
    Error &&takeError() { return std::get<1>(std::move(v_)); }

private:
    std::variant<T, Error> v_;
};

template <> class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : error_(std::move(error)), ok_(false) {}

    bool ok() const { return ok_; }
    explicit operator bool() const { return ok_; }
    const Error &error() const { return error_; }
    Error &&takeError() { return std::move(error_); }

private:
    Error error_;
    bool ok_ = true;
};

inline Error makeError(int code, std::string message)
{
    return Error{code < 0 ? -code : code, std::move(message)};
}

// Propagate an error in one line: OOH_TRY(doThing());
#define OOH_TRY(expr)                                                                              \
    do {                                                                                           \
        auto ooh_try_result_ = (expr);                                                             \
        if (!ooh_try_result_)                                                                      \
            return ooh_try_result_.takeError();                                                    \
    } while (0)

} // namespace ooh
