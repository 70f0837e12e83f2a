// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/access_proof.h.
#include "access_proof.h"

#include <fcntl.h>
#include <string>
#include <sys/stat.h>

namespace ooh {

Result<void> checkAccessProof(const PeerCredentials &peer, const Process &target,
                              const UniqueFD &proof)
{
    if (peer.uid == 0)
        return {};
    const std::string who = "uid " + std::to_string(peer.uid);
    const std::string pid = std::to_string(target.pid());
    if (!proof.isValid())
        return makeError(EPERM, who + " must show that it may trace pid " + pid +
                                    " by passing /proc/" + pid +
                                    "/mem opened itself (libooh and oohctl do; upgrade the "
                                    "client)");
    struct stat passed = {};
    if (::fstat(proof.get(), &passed) < 0)
        return Error::fromErrno(errno, "fstat of the /proc/" + pid + "/mem passed by " + who);
    // oohd's own view of that file, without opening it (O_PATH runs no
    // access check). The client's open file pins its dentry while the
    // process lives, so the same file of the same procfs has the same
    // device and inode; another process, a reused pid or another /proc
    // mount (another PID namespace) has not.
    UniqueFD ours(::open(target.procPath("mem").c_str(), O_PATH | O_CLOEXEC));
    if (!ours.isValid())
        return openFailure(errno, "open " + target.procPath("mem"));
    struct stat mine = {};
    if (::fstat(ours.get(), &mine) < 0)
        return Error::fromErrno(errno, "fstat " + target.procPath("mem"));
    if (!S_ISREG(passed.st_mode) || passed.st_dev != mine.st_dev || passed.st_ino != mine.st_ino)
        return makeError(EPERM, "the file " + who + " passed is not /proc/" + pid +
                                    "/mem of that process as oohd's /proc shows it (a client in "
                                    "another PID namespace must run as root)");
    // The path named the pidfd's process only if that process still lives.
    if (!target.isAlive())
        return makeError(ESRCH, "process " + pid + " exited while being tracked");
    return {};
}

} // namespace ooh
