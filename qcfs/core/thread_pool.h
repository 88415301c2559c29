// A fixed pool of worker threads running queued tasks (hashing and
// compression of chunks). Thread-safe. The destructor finishes queued tasks
// and joins the workers.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace qcfs {

class ThreadPool {
 public:
  // threads == 0 means one per CPU.
  explicit ThreadPool(size_t threads);
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool();

  void Submit(std::function<void()> task);
  size_t size() const { return workers_.size(); }

  // Runs fn(i) for i in [0, n) on the pool and the calling thread; returns
  // when all calls have returned.
  void ParallelFor(size_t n, const std::function<void(size_t)>& fn);

 private:
  void WorkerLoop();

  std::mutex mu_;  // guards queue_ and stop_
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace qcfs
