// Running blocking work (pg_dump) off the event loop: the work runs on its
// own thread and the awaiting coroutine resumes on its executor when it is
// done. Shared state, so the thread may outlive an abandoned coroutine.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <thread>

namespace geosync::seed {

template <typename T>
struct BlockingState {
  explicit BlockingState(boost::asio::any_io_executor e)
      : done(e, boost::asio::steady_timer::time_point::max()) {}
  boost::asio::steady_timer done;
  std::optional<T> result;
  std::atomic<bool> ready{false};
};

template <typename T>
boost::asio::awaitable<T> AwaitBlocking(std::shared_ptr<BlockingState<T>> state) {
  namespace asio = boost::asio;
  // The cancel is posted to this coroutine's (single-threaded) executor, so it
  // cannot fire before this wait has started.
  while (!state->ready) co_await state->done.async_wait(asio::as_tuple(asio::use_awaitable));
  co_return std::move(*state->result);
}

// Not a coroutine itself: GCC 12 destroys a lambda passed by value into a
// coroutine twice, so the work is handed to the thread here and only the
// shared state enters the coroutine frame.
template <typename T, typename Work>
boost::asio::awaitable<T> RunBlocking(boost::asio::any_io_executor ex, Work work) {
  auto state = std::make_shared<BlockingState<T>>(ex);
  std::thread([state, ex, work = std::move(work)]() mutable {
    state->result.emplace(work());
    state->ready = true;
    // The handler holds the last reference this thread had: the timer is
    // destroyed on the executor's thread, never here.
    boost::asio::post(ex, [s = std::move(state)] { s->done.cancel(); });
  }).detach();
  return AwaitBlocking<T>(std::move(state));
}

}  // namespace geosync::seed
