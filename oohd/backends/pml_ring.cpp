// SPDX-License-Identifier: Apache-2.0
// Implementation of the "pml-ring" backend (oohd/backends/pml_ring.h).
#include "pml_ring.h"

#include "log.h"
#include "ooh/ooh_ring.h"
#include "pagemap_scan.h"
#include "proc_maps.h"
#include "spml_reverse_map.h"
#include "unique_fd.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace ooh {

namespace {

constexpr const char *kLog = "pml-ring";

uint64_t pageSize()
{
    static const uint64_t size = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    return size;
}

const char *modeName(PmlRingBackend::Mode m)
{
    return m == PmlRingBackend::Mode::Spml   ? "spml"
           : m == PmlRingBackend::Mode::Epml ? "epml"
                                             : "auto";
}

// Every mapping of the target, as whole ranges (what a lost epoch reports).
std::vector<PageRange> wholeAddressSpace(const std::vector<MapEntry> &maps)
{
    std::vector<PageRange> out;
    for (const MapEntry &m : maps)
        if (!m.isKernelSpecial())
            out.push_back({m.start, m.end, true});
    return out;
}

// The present and swapped pages of `maps`, read from the target's pagemap.
Result<std::vector<PagemapPage>> readPagemap(pid_t pid, int pagemap_fd,
                                             const std::vector<MapEntry> &maps, uint64_t *mapped)
{
    const uint64_t ps = pageSize();
    std::vector<PagemapPage> pages;
    std::vector<uint64_t> buf(16384);
    *mapped = 0;
    for (const MapEntry &m : maps) {
        // PROT_NONE reservations (language runtimes reserve terabytes) hold
        // nobody's writes; their pages read as vanished at worst.
        if (m.isKernelSpecial() || !(m.read || m.write || m.exec))
            continue;
        *mapped += m.end - m.start;
        for (uint64_t addr = m.start; addr < m.end;) {
            uint64_t n = std::min<uint64_t>(buf.size(), (m.end - addr) / ps);
            ssize_t got = ::pread(pagemap_fd, buf.data(), n * 8, static_cast<off_t>(addr / ps * 8));
            if (got < 0)
                return Error::fromErrno(errno, "read pagemap of " + std::to_string(pid));
            if (got == 0 || got % 8)
                return makeError(EIO, "short pagemap read for " + std::to_string(pid));
            for (size_t i = 0; i < static_cast<size_t>(got) / 8; ++i)
                if (buf[i] & (SpmlReverseMap::kPresent | SpmlReverseMap::kSwapped))
                    pages.push_back({addr + i * ps, buf[i]});
            addr += static_cast<uint64_t>(got) / 8 * ps;
        }
    }
    return pages;
}

class PmlRingTracker final : public Tracker {
public:
    PmlRingTracker(const Target &target, PmlRingBackend::Mode mode)
        : target_(target), pid_(target.pid()), mode_(mode)
    {
    }
    ~PmlRingTracker() override
    {
        if (ring_ != MAP_FAILED)
            ::munmap(ring_, ring_bytes_);
    }

    Result<void> start()
    {
        {
            // SPML maps frames back with it; both modes report the pages
            // that vanished (discarded: changed without a write).
            auto pagemap = target_.openFile("pagemap", O_RDONLY);
            if (!pagemap)
                return pagemap.takeError();
            pagemap_ = std::move(*pagemap);
            // Before logging starts: see SpmlReverseMap for why that order.
            auto maps = target_.readMaps();
            if (!maps)
                return maps.takeError();
            auto snap = readPagemap(pid_, pagemap_.get(), *maps, &mapped_);
            if (!snap)
                return snap.takeError();
            reverse_.reset(std::move(*snap));
        }
        ctl_.reset(::open(OOH_CTL_DEVICE, O_RDWR | O_CLOEXEC));
        if (!ctl_.isValid())
            return Error::fromErrno(errno, "open " OOH_CTL_DEVICE);
        // Our proof to the module that we may ptrace the target.
        auto mem = target_.openFile("mem", O_RDONLY);
        if (!mem)
            return mem.takeError();
        ooh_track_req req = {};
        req.size = sizeof(req);
        req.mode = mode_ == PmlRingBackend::Mode::Epml ? OOH_MODE_EPML : OOH_MODE_SPML;
        req.pid = pid_;
        req.mem_fd = mem->get();
        if (const char *e = std::getenv("OOH_RING_ENTRIES"))
            req.ring_entries = static_cast<uint32_t>(std::strtoul(e, nullptr, 0));
        if (::ioctl(ctl_.get(), OOH_IOC_TRACK, &req) != 0)
            return Error::fromErrno(errno, "OOH_IOC_TRACK pid " + std::to_string(pid_));

        std::string uio = oohUioDevicePath(req.uio_index);
        if (uio.empty())
            return makeError(ENODEV, "UIO device " + std::to_string(req.uio_index) +
                                         " of the ring is not an " OOH_RING_UIO_NAME);
        uio_.reset(::open(uio.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
        if (!uio_.isValid())
            return Error::fromErrno(errno, "open " + uio);
        ring_bytes_ = req.ring_bytes;
        ring_ = ::mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, uio_.get(), 0);
        if (ring_ == MAP_FAILED)
            return Error::fromErrno(errno, "mmap " + uio);
        hdr_ = static_cast<ooh_ring_header *>(ring_);
        if (hdr_->magic != OOH_RING_MAGIC || hdr_->abi_version != OOH_ABI_VERSION ||
            hdr_->capacity == 0 || (hdr_->capacity & (hdr_->capacity - 1)) ||
            hdr_->entries_offset + hdr_->capacity * 8 > ring_bytes_)
            return makeError(EPROTO, "ring of " + uio + " has a bad header");
        entries_ =
            reinterpret_cast<const uint64_t *>(static_cast<char *>(ring_) + hdr_->entries_offset);
        lost_seen_ = __atomic_load_n(&hdr_->lost_events, __ATOMIC_ACQUIRE);
        OOH_LOG(kLog, Info) << "tracking pid " << pid_ << " (" << modeName(mode_) << ", "
                            << req.threads << " threads, ring " << hdr_->capacity << " entries on "
                            << uio << ")";
        return {};
    }

    Result<void> collect(std::vector<PageRange> &out) override
    {
        ooh_collect_req req = {};
        req.size = sizeof(req);
        if (::ioctl(ctl_.get(), OOH_IOC_COLLECT, &req) != 0)
            return Error::fromErrno(errno, "OOH_IOC_COLLECT pid " + std::to_string(pid_));
        consume(req.collect_head);
        // One read of the mappings serves the whole collect.
        auto maps = target_.readMaps();
        if (!maps)
            return maps.takeError();

        std::vector<PageRange> found;
        if (req.lost_events != lost_seen_) {
            // Entries were dropped: only the whole address space is safe.
            OOH_LOG(kLog, Warning) << "pid " << pid_ << ": " << (req.lost_events - lost_seen_)
                                   << " ring loss event(s), reporting every mapping";
            lost_seen_ = req.lost_events;
            found = wholeAddressSpace(*maps);
            ++lost_epochs_;
        }

        const uint64_t ps = pageSize();
        if (mode_ == PmlRingBackend::Mode::Epml) {
            std::sort(pending_.begin(), pending_.end());
            pending_.erase(std::unique(pending_.begin(), pending_.end()), pending_.end());
            size_t first_exact = found.size();
            for (uint64_t va : pending_) {
                // EPML entries above user space are the kernel's own
                // writes while the target ran.
                if (va >= userAddressLimit())
                    break; // sorted: the rest are kernel addresses too
                if (found.size() > first_exact && found.back().end == va)
                    found.back().end = va + ps;
                else
                    found.push_back({va, va + ps, false});
            }
        } else {
            auto snap = readPagemap(pid_, pagemap_.get(), *maps, &mapped_);
            if (!snap)
                return snap.takeError();
            auto pages = reverse_.update(pending_, std::move(*snap), ps);
            found.insert(found.end(), pages.begin(), pages.end());
        }
        if (mode_ == PmlRingBackend::Mode::Epml) {
            // Virtual addresses miss what moved without a write: pages
            // discarded, or written and then mremap()ed elsewhere (logged at
            // the old address; they appear at the new one).
            auto snap = readPagemap(pid_, pagemap_.get(), *maps, &mapped_);
            if (!snap)
                return snap.takeError();
            std::vector<uint64_t> none;
            auto pages = reverse_.update(none, std::move(*snap), ps);
            found.insert(found.end(), pages.begin(), pages.end());
        }
        // The PML log sees writes through the target's page tables only.
        appendSharedMappings(*maps, found);
        pending_.clear();
        out.insert(out.end(), found.begin(), found.end());
        return {};
    }

    int eventFd() const override { return uio_.get(); }

    Result<void> handleEvents() override
    {
        // The module wakes us when the ring fills: move entries out so it
        // does not overflow before the next collect.
        uint32_t count;
        while (::read(uio_.get(), &count, sizeof(count)) == sizeof(count)) {
        }
        consume(__atomic_load_n(&hdr_->head, __ATOMIC_ACQUIRE));
        return {};
    }

    // Both modes compare the pagemap with the previous collect's.
    bool reportsDiscards() const override { return true; }
    uint64_t trackedBytes() const override
    {
        if (mapped_)
            return mapped_;
        auto maps = target_.readMaps();
        uint64_t bytes = 0;
        if (maps)
            for (const auto &r : wholeAddressSpace(*maps))
                bytes += r.bytes();
        return bytes;
    }

private:
    void consume(uint64_t limit)
    {
        uint64_t tail = hdr_->tail;
        uint64_t cap = hdr_->capacity;
        if (limit - tail > cap) // cannot happen with a sane module
            tail = limit - cap;
        for (; tail < limit; ++tail)
            pending_.push_back(entries_[tail & (cap - 1)]);
        __atomic_store_n(&hdr_->tail, tail, __ATOMIC_RELEASE);
    }

    Target target_;
    pid_t pid_;
    PmlRingBackend::Mode mode_;
    UniqueFD ctl_;
    UniqueFD uio_;
    UniqueFD pagemap_;
    void *ring_ = MAP_FAILED;
    size_t ring_bytes_ = 0;
    ooh_ring_header *hdr_ = nullptr;
    const uint64_t *entries_ = nullptr;
    uint64_t lost_seen_ = 0;
    uint64_t lost_epochs_ = 0;
    uint64_t mapped_ = 0;
    std::vector<uint64_t> pending_;
    SpmlReverseMap reverse_;
};

} // namespace

std::string oohUioDevicePath(unsigned index)
{
    std::ifstream name("/sys/class/uio/uio" + std::to_string(index) + "/name");
    std::string line;
    if (!std::getline(name, line) || line != OOH_RING_UIO_NAME)
        return {};
    return "/dev/uio" + std::to_string(index);
}

BackendProbe PmlRingBackend::probe()
{
    available_ = false;
    struct stat st;
    if (::stat(OOH_CTL_DEVICE, &st) != 0) {
        reason_ = OOH_CTL_DEVICE " absent: the OoH guest module is not loaded "
                                 "(it needs Xen SPML or the qemu-pml device)";
        return {false, reason_};
    }
    UniqueFD ctl(::open(OOH_CTL_DEVICE, O_RDWR | O_CLOEXEC));
    if (!ctl.isValid()) {
        reason_ = std::string("open " OOH_CTL_DEVICE ": ") + std::strerror(errno);
        return {false, reason_};
    }
    ooh_info info = {};
    info.size = sizeof(info);
    if (::ioctl(ctl.get(), OOH_IOC_INFO, &info) != 0 || info.abi_version != OOH_ABI_VERSION) {
        reason_ = "the OoH guest module speaks another ABI";
        return {false, reason_};
    }
    if (!info.transports) {
        reason_ = "the OoH guest module has no PML transport";
        return {false, reason_};
    }
    bool spml = info.modes & (1u << OOH_MODE_SPML);
    bool epml = info.modes & (1u << OOH_MODE_EPML);
    Mode want = requested_;
    if (want == Mode::Auto) {
        if (const char *e = std::getenv("OOH_PML_MODE")) {
            if (!std::strcmp(e, "spml"))
                want = Mode::Spml;
            else if (!std::strcmp(e, "epml"))
                want = Mode::Epml;
        }
    }
    if (want == Mode::Auto)
        want = epml ? Mode::Epml : Mode::Spml;
    if ((want == Mode::Spml && !spml) || (want == Mode::Epml && !epml)) {
        reason_ =
            std::string("transport ") + info.transport + " has no " + modeName(want) + " mode";
        return {false, reason_};
    }
    mode_ = want;
    available_ = true;
    reason_ = std::string(modeName(mode_)) + " through " + info.transport;
    return {true, reason_};
}

Result<std::unique_ptr<Tracker>> PmlRingBackend::track(const Target &target)
{
    if (!available_)
        return makeError(ENODEV, "pml-ring backend unavailable: " + reason_);
    auto tracker = std::make_unique<PmlRingTracker>(target, mode_);
    OOH_TRY(tracker->start());
    return std::unique_ptr<Tracker>(std::move(tracker));
}

} // namespace ooh
