// The in-process communicator (thread_group.h). Every collective is two meetings of the group's
// threads: each rank posts pointers to its buffers, all meet (barrier 1), each rank reads the
// others' posted buffers and computes its own result, all meet again (barrier 2) so no buffer is
// changed while another rank still reads it, then in-place results are written back. Sums read
// the ranks' inputs in rank order, so every rank computes the same bits whatever the thread
// timing. One mutex and condition variable serve the whole world (sub-groups included), so an
// abort wakes every waiting thread of every group.
#include "anchorctx/dist/thread_group.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>

namespace anchorctx::dist {

struct detail::ThreadWorld {
  std::mutex mutex;
  std::condition_variable changed;
  bool aborted = false;
  std::string reason;
  std::atomic<std::int64_t> a2a_calls{0}, a2a_bytes{0};

  // Marks the world aborted (first reason wins) and wakes every waiter.
  void abort(const std::string& why) {
    {
      const std::lock_guard lock(mutex);
      if (aborted) return;
      aborted = true;
      reason = why;
    }
    changed.notify_all();
  }
};

namespace {

using World = detail::ThreadWorld;

// What one rank posts for a collective.
struct Post {
  const void* in = nullptr;
  std::size_t in_size = 0;
  const std::size_t* counts = nullptr;  // per rank (all_to_all: send counts)
  std::size_t counts_size = 0;
  int color = 0, key = 0;  // split
};

struct Group;

struct Group {
  explicit Group(int n) : size(n), posts(static_cast<std::size_t>(n)) {}
  int size;
  std::vector<Post> posts;
  int arrived = 0;
  std::uint64_t generation = 0;
  // split: built by rank 0 between the two meetings, read by each rank after the second.
  std::vector<std::shared_ptr<Group>> child;
  std::vector<int> child_rank;
};

class ThreadRank final : public Communicator {
 public:
  ThreadRank(std::shared_ptr<World> world, std::shared_ptr<Group> group, int rank)
      : world_(std::move(world)), group_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int world_size() const override { return group_->size; }

  void all_reduce_sum(std::span<float> values) override { reduce(values, std::plus<>()); }
  void all_reduce_sum(std::span<double> values) override { reduce(values, std::plus<>()); }
  void all_reduce_sum(std::span<std::int64_t> values) override { reduce(values, std::plus<>()); }
  void all_reduce_max(std::span<double> values) override {
    reduce(values, [](double a, double b) { return std::max(a, b); });
  }

  void broadcast(std::span<std::byte> bytes, int root) override {
    require(root >= 0 && root < group_->size, "communicator broadcast: root {} in a group of {}",
            root, group_->size);
    post({bytes.data(), bytes.size()});
    meet();
    const Post& r = group_->posts[static_cast<std::size_t>(root)];
    const bool ok = r.in_size == bytes.size();
    std::vector<std::byte> copy;
    if (ok && root != rank_) {
      const auto* src = static_cast<const std::byte*>(r.in);
      copy.assign(src, src + r.in_size);
    }
    meet();
    require(ok, "communicator broadcast: rank {} holds {} bytes but root {} sends {}", rank_,
            bytes.size(), root, r.in_size);
    if (root != rank_) std::copy(copy.begin(), copy.end(), bytes.begin());
  }

  void all_to_all(std::span<const float> send, std::span<const std::size_t> send_counts,
                  std::span<float> recv, std::span<const std::size_t> recv_counts) override {
    const std::size_t n = static_cast<std::size_t>(group_->size);
    require(send_counts.size() == n && recv_counts.size() == n,
            "communicator all_to_all: {} send and {} receive counts in a group of {}",
            send_counts.size(), recv_counts.size(), n);
    require(std::accumulate(send_counts.begin(), send_counts.end(), std::size_t{0}) == send.size(),
            "communicator all_to_all: send counts do not sum to the {} floats sent", send.size());
    require(std::accumulate(recv_counts.begin(), recv_counts.end(), std::size_t{0}) == recv.size(),
            "communicator all_to_all: receive counts do not sum to the {} floats received",
            recv.size());
    post({send.data(), send.size(), send_counts.data(), send_counts.size()});
    meet();
    std::string error;
    std::size_t at = 0;
    std::int64_t moved = 0;
    for (std::size_t p = 0; p < n && error.empty(); ++p) {
      const Post& from = group_->posts[p];
      std::size_t offset = 0;
      for (std::size_t q = 0; q < static_cast<std::size_t>(rank_); ++q)
        offset += from.counts[q];
      const std::size_t count = from.counts[rank_];
      if (count != recv_counts[p]) {
        error = fmt::format(
            "communicator all_to_all: rank {} sends {} floats to rank {}, which "
            "expects {}",
            p, count, rank_, recv_counts[p]);
        break;
      }
      const float* src = static_cast<const float*>(from.in) + offset;
      std::copy(src, src + count, recv.begin() + static_cast<std::ptrdiff_t>(at));
      at += count;
      if (p != static_cast<std::size_t>(rank_))
        moved += static_cast<std::int64_t>(count * sizeof(float));
    }
    world_->a2a_bytes += moved;
    if (rank_ == 0) ++world_->a2a_calls;
    meet();
    if (!error.empty()) throw Error(error);
  }

  void all_gather(std::span<const float> mine, std::span<float> all,
                  std::span<const std::size_t> counts) override {
    const std::size_t n = static_cast<std::size_t>(group_->size);
    require(counts.size() == n, "communicator all_gather: {} counts in a group of {}",
            counts.size(), n);
    require(counts[rank_] == mine.size(),
            "communicator all_gather: rank {} gives {} floats, count {}", rank_, mine.size(),
            counts[rank_]);
    require(std::accumulate(counts.begin(), counts.end(), std::size_t{0}) == all.size(),
            "communicator all_gather: output of {} floats for counts summing otherwise",
            all.size());
    post({mine.data(), mine.size()});
    meet();
    std::string error;
    std::size_t at = 0;
    for (std::size_t p = 0; p < n; ++p) {
      const Post& from = group_->posts[p];
      if (from.in_size != counts[p]) {
        error = fmt::format("communicator all_gather: rank {} gives {} floats, count {}", p,
                            from.in_size, counts[p]);
        break;
      }
      const float* src = static_cast<const float*>(from.in);
      std::copy(src, src + from.in_size, all.begin() + static_cast<std::ptrdiff_t>(at));
      at += from.in_size;
    }
    meet();
    if (!error.empty()) throw Error(error);
  }

  void reduce_scatter_sum(std::span<const float> values, std::span<float> mine,
                          std::span<const std::size_t> counts) override {
    const std::size_t n = static_cast<std::size_t>(group_->size);
    require(counts.size() == n, "communicator reduce_scatter_sum: {} counts in a group of {}",
            counts.size(), n);
    require(std::accumulate(counts.begin(), counts.end(), std::size_t{0}) == values.size(),
            "communicator reduce_scatter_sum: counts do not sum to the {} values", values.size());
    require(mine.size() == counts[rank_], "communicator reduce_scatter_sum: output {} for count {}",
            mine.size(), counts[rank_]);
    post({values.data(), values.size()});
    meet();
    const std::size_t offset =
        std::accumulate(counts.begin(), counts.begin() + rank_, std::size_t{0});
    std::string error;
    std::vector<float> sum(mine.size(), 0.0f);
    for (std::size_t p = 0; p < n && error.empty(); ++p) {
      const Post& from = group_->posts[p];
      if (from.in_size != values.size()) {
        error = fmt::format("communicator reduce_scatter_sum: rank {} gives {} values, rank {} {}",
                            p, from.in_size, rank_, values.size());
        break;
      }
      const float* src = static_cast<const float*>(from.in) + offset;
      for (std::size_t i = 0; i < sum.size(); ++i)
        sum[i] = p == 0 ? src[i] : sum[i] + src[i];
    }
    meet();
    if (!error.empty()) throw Error(error);
    std::copy(sum.begin(), sum.end(), mine.begin());
  }

  void barrier() override { meet(); }

  std::unique_ptr<Communicator> split(int color, int key) override {
    Post p;
    p.color = color;
    p.key = key;
    post(p);
    meet();
    if (rank_ == 0) {
      const std::size_t n = static_cast<std::size_t>(group_->size);
      group_->child.assign(n, nullptr);
      group_->child_rank.assign(n, 0);
      std::vector<int> order(n);
      std::iota(order.begin(), order.end(), 0);
      // By color, then key, then rank: each color's members in their new rank order.
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        const Post &pa = group_->posts[static_cast<std::size_t>(a)],
                   &pb = group_->posts[static_cast<std::size_t>(b)];
        return pa.color != pb.color ? pa.color < pb.color : pa.key < pb.key;
      });
      for (std::size_t i = 0; i < n;) {
        std::size_t j = i;
        const int c = group_->posts[static_cast<std::size_t>(order[i])].color;
        while (j < n && group_->posts[static_cast<std::size_t>(order[j])].color == c)
          ++j;
        auto child = std::make_shared<Group>(static_cast<int>(j - i));
        for (std::size_t m = i; m < j; ++m) {
          group_->child[static_cast<std::size_t>(order[m])] = child;
          group_->child_rank[static_cast<std::size_t>(order[m])] = static_cast<int>(m - i);
        }
        i = j;
      }
    }
    meet();
    return std::make_unique<ThreadRank>(world_, group_->child[static_cast<std::size_t>(rank_)],
                                        group_->child_rank[static_cast<std::size_t>(rank_)]);
  }

  [[noreturn]] void abort(std::string_view reason) override {
    const std::string why(reason);
    std::fprintf(stderr, "anchorctx: error: %s\n", why.c_str());
    world_->abort(why);
    throw Aborted(fmt::format("aborted by rank {}: {}", rank_, why));
  }

 private:
  void post(const Post& p) { group_->posts[static_cast<std::size_t>(rank_)] = p; }

  // The group's barrier; throws Aborted once the world is aborted.
  void meet() {
    std::unique_lock lock(world_->mutex);
    const auto check = [&] {
      if (world_->aborted) throw Aborted("communicator: the run was aborted: " + world_->reason);
    };
    check();
    const std::uint64_t gen = group_->generation;
    if (++group_->arrived == group_->size) {
      group_->arrived = 0;
      ++group_->generation;
      lock.unlock();
      world_->changed.notify_all();
      return;
    }
    world_->changed.wait(lock, [&] { return world_->aborted || group_->generation != gen; });
    if (group_->generation == gen) check();
  }

  // values[i] = op over ranks in rank order (each rank computes it from all inputs).
  template <typename T, typename Op>
  void reduce(std::span<T> values, Op op) {
    post({values.data(), values.size()});
    meet();
    std::string error;
    std::vector<T> out(values.size());
    for (std::size_t p = 0; p < static_cast<std::size_t>(group_->size); ++p) {
      const Post& from = group_->posts[p];
      if (from.in_size != values.size()) {
        error = fmt::format("communicator all_reduce: rank {} gives {} values, rank {} {}", p,
                            from.in_size, rank_, values.size());
        break;
      }
      const T* src = static_cast<const T*>(from.in);
      for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = p == 0 ? src[i] : op(out[i], src[i]);
    }
    meet();
    if (!error.empty()) throw Error(error);
    std::copy(out.begin(), out.end(), values.begin());
  }

  std::shared_ptr<World> world_;
  std::shared_ptr<Group> group_;
  int rank_;
};

}  // namespace

ThreadGroup::ThreadGroup(int ranks) : world_(std::make_shared<detail::ThreadWorld>()) {
  require(ranks >= 1, "thread group: {} ranks (must be at least 1)", ranks);
  auto group = std::make_shared<Group>(ranks);
  for (int r = 0; r < ranks; ++r)
    ranks_.push_back(std::make_unique<ThreadRank>(world_, group, r));
}

ThreadGroup::~ThreadGroup() = default;

ThreadGroupTraffic ThreadGroup::traffic() const {
  return {world_->a2a_calls.load(), world_->a2a_bytes.load()};
}

void ThreadGroup::reset_traffic() {
  world_->a2a_calls = 0;
  world_->a2a_bytes = 0;
}

void ThreadGroup::run(const std::function<void(Communicator&)>& fn) {
  std::vector<std::exception_ptr> errors(ranks_.size());
  std::vector<std::thread> threads;
  for (std::size_t r = 0; r < ranks_.size(); ++r)
    threads.emplace_back([&, r] {
      try {
        fn(*ranks_[r]);
      } catch (const std::exception& e) {
        errors[r] = std::current_exception();
        world_->abort(fmt::format("rank {}: {}", r, e.what()));
      } catch (...) {
        errors[r] = std::current_exception();
        world_->abort(fmt::format("rank {}: unknown exception", r));
      }
    });
  for (std::thread& t : threads)
    t.join();
  std::exception_ptr first;
  for (const std::exception_ptr& e : errors) {
    if (!e) continue;
    try {
      std::rethrow_exception(e);
    } catch (const Aborted&) {
      if (!first) first = e;
    } catch (...) {
      std::rethrow_exception(e);
    }
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace anchorctx::dist
