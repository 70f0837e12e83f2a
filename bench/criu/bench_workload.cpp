// SPDX-License-Identifier: Apache-2.0
// Workload of the CRIU benchmark: maps and fills --mib MiB, then on every
// SIGUSR1 writes --dirty-pct percent of its pages (distinct, random) and
// acknowledges by writing DIR/round-N. Idle otherwise, so each dump sees
// exactly the pages of the rounds before it. --pattern scattered (default)
// picks single pages; clustered picks runs of kClusterPages pages, as a
// program that rewrites whole objects or arrays does.
#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <getopt.h>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

namespace {
constexpr size_t kClusterPages = 64; // 256 KiB runs
volatile sig_atomic_t g_round;
void onUsr1(int) { g_round = g_round + 1; }

void writeFile(const std::string &path, const std::string &text)
{
    std::string tmp = path + ".tmp";
    FILE *f = std::fopen(tmp.c_str(), "w");
    if (!f)
        std::exit(2);
    std::fputs(text.c_str(), f);
    std::fclose(f);
    std::rename(tmp.c_str(), path.c_str());
}
} // namespace

int main(int argc, char **argv)
{
    size_t mib = 1024;
    double pct = 1.0;
    std::string dir, pattern = "scattered";
    static const option opts[] = {{"mib", required_argument, nullptr, 'm'},
                                  {"dirty-pct", required_argument, nullptr, 'p'},
                                  {"dir", required_argument, nullptr, 'd'},
                                  {"pattern", required_argument, nullptr, 't'},
                                  {}};
    int c;
    while ((c = getopt_long(argc, argv, "m:p:d:t:", opts, nullptr)) != -1) {
        switch (c) {
        case 'm': mib = std::strtoul(optarg, nullptr, 0); break;
        case 'p': pct = std::strtod(optarg, nullptr); break;
        case 'd': dir = optarg; break;
        case 't': pattern = optarg; break;
        default:
            std::fprintf(stderr,
                         "usage: %s --dir DIR [--mib N] [--dirty-pct P] "
                         "[--pattern scattered|clustered]\n",
                         argv[0]);
            return 2;
        }
    }
    if (dir.empty() || !mib || pct <= 0 || pct > 100 ||
        (pattern != "scattered" && pattern != "clustered")) {
        std::fprintf(stderr,
                     "%s: needs --dir, --mib > 0, 0 < --dirty-pct <= 100 and "
                     "--pattern scattered or clustered\n",
                     argv[0]);
        return 2;
    }
    const size_t unit = pattern == "clustered" ? kClusterPages : 1;

    const size_t page = 4096, pages = mib * 256;
    auto *mem = static_cast<uint8_t *>(
        mmap(nullptr, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (mem == MAP_FAILED)
        return 2;
    for (size_t i = 0; i < pages; i++)
        std::memset(mem + i * page, int(i), page);

    signal(SIGUSR1, onUsr1);
    writeFile(dir + "/pid", std::to_string(getpid()) + "\n");

    // Units (pages, or clusters of pages) in a random order, chosen anew
    // for each round.
    const size_t units = (pages + unit - 1) / unit;
    std::vector<uint32_t> order(units);
    for (size_t i = 0; i < units; i++)
        order[i] = uint32_t(i);
    uint64_t rng = 88172645463325252ull;
    const size_t perRound = size_t(pages * pct / 100.0);
    int done = 0;
    while (true) {
        while (done == g_round)
            pause();
        // A partial Fisher-Yates shuffle picks distinct units.
        size_t written = 0;
        for (size_t k = 0; k < units && written < perRound; k++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            size_t j = k + rng % (units - k);
            std::swap(order[k], order[j]);
            for (size_t p = size_t(order[k]) * unit;
                 p < std::min(pages, size_t(order[k] + 1) * unit) && written < perRound; p++) {
                mem[p * page] ^= 0xff;
                written++;
            }
        }
        done++;
        writeFile(dir + "/round-" + std::to_string(done), std::to_string(perRound) + "\n");
    }
}
