// Running blocking work (pg_dump, libpq COPY) off the event loop: the work
// runs on its own thread and the awaiting coroutine resumes on its executor
// when it is done. Shared state, so the thread may outlive an abandoned
// coroutine.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <thread>

namespace geosync::seed {

template <typename T>
boost::asio::awaitable<T> RunBlocking(std::function<T()> work) {
  namespace asio = boost::asio;
  auto ex = co_await asio::this_coro::executor;
  struct Shared {
    explicit Shared(asio::any_io_executor e) : done(e, asio::steady_timer::time_point::max()) {}
    asio::steady_timer done;
    std::optional<T> result;
    std::atomic<bool> ready{false};
  };
  auto shared = std::make_shared<Shared>(ex);
  std::thread([shared, ex, work = std::move(work)] {
    shared->result.emplace(work());
    shared->ready = true;
    asio::post(ex, [shared] { shared->done.cancel(); });
  }).detach();
  // The post above runs on this coroutine's (single-threaded) executor, so it
  // cannot fire before this wait has started.
  while (!shared->ready) co_await shared->done.async_wait(asio::as_tuple(asio::use_awaitable));
  co_return std::move(*shared->result);
}

}  // namespace geosync::seed
