// SPDX-License-Identifier: Apache-2.0
// Workload of the CRIU benchmark: maps and fills --mib MiB, then on every
// SIGUSR1 writes --dirty-pct percent of its pages (distinct, random) and
// acknowledges by writing DIR/round-N. Idle otherwise, so each dump sees
// exactly the pages of the rounds before it.
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
    std::string dir;
    static const option opts[] = {{"mib", required_argument, nullptr, 'm'},
                                  {"dirty-pct", required_argument, nullptr, 'p'},
                                  {"dir", required_argument, nullptr, 'd'},
                                  {}};
    int c;
    while ((c = getopt_long(argc, argv, "m:p:d:", opts, nullptr)) != -1) {
        switch (c) {
        case 'm': mib = std::strtoul(optarg, nullptr, 0); break;
        case 'p': pct = std::strtod(optarg, nullptr); break;
        case 'd': dir = optarg; break;
        default:
            std::fprintf(stderr, "usage: %s --dir DIR [--mib N] [--dirty-pct P]\n", argv[0]);
            return 2;
        }
    }
    if (dir.empty() || !mib || pct <= 0 || pct > 100)
        return 2;

    const size_t page = 4096, pages = mib * 256;
    auto *mem = static_cast<uint8_t *>(
        mmap(nullptr, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (mem == MAP_FAILED)
        return 2;
    for (size_t i = 0; i < pages; i++)
        std::memset(mem + i * page, int(i), page);

    signal(SIGUSR1, onUsr1);
    writeFile(dir + "/pid", std::to_string(getpid()) + "\n");

    std::vector<uint32_t> order(pages);
    for (size_t i = 0; i < pages; i++)
        order[i] = uint32_t(i);
    uint64_t rng = 88172645463325252ull;
    const size_t perRound = size_t(pages * pct / 100.0);
    int done = 0;
    while (true) {
        while (done == g_round)
            pause();
        // A partial Fisher-Yates shuffle picks distinct pages.
        for (size_t k = 0; k < perRound; k++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            size_t j = k + rng % (pages - k);
            std::swap(order[k], order[j]);
            mem[size_t(order[k]) * page] ^= 0xff;
        }
        done++;
        writeFile(dir + "/round-" + std::to_string(done), std::to_string(perRound) + "\n");
    }
}
