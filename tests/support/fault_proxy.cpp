// FaultProxy on Boost.Asio coroutines: one acceptor loop, and per connection
// two reader/writer pairs joined by bounded channels.
#include "tests/support/fault_proxy.h"

#include <boost/asio.hpp>
#include <boost/asio/experimental/channel.hpp>

#include <functional>
#include <future>
#include <iostream>
#include <vector>

#include <fmt/format.h>

namespace geosync::testing {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

constexpr int kNotCut = -1;

// One read from a peer. Empty data marks that the peer sent FIN.
struct Chunk {
  std::vector<uint8_t> data;
  Clock::time_point due;
};
using ChunkChannel = asio::experimental::channel<void(error_code, Chunk)>;

awaitable<void> SleepUntil(Clock::time_point t) {
  if (Clock::now() >= t) co_return;
  asio::steady_timer timer(co_await asio::this_coro::executor, t);
  error_code ec;
  co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
}

int Index(Direction d) { return d == Direction::kClientToServer ? 0 : 1; }

}  // namespace

class FaultProxy::Impl {
 public:
  class Session;

  explicit Impl(FaultProxy& owner) : owner_(owner), acceptor_(io_) {}

  Status Listen() {
    error_code ec;
    tcp::endpoint ep(asio::ip::make_address_v4("127.0.0.1"), 0);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status::Io(fmt::format("fault proxy cannot listen: {}", ec.message()));
    owner_.port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, AcceptLoop(), asio::detached);
    return Status::Ok();
  }

  void Run() { io_.run(); }

  // Runs `fn` on the proxy thread and waits for it, so a control takes effect
  // before it returns to the test.
  void RunOnIo(std::function<void()> fn) {
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> finished = done->get_future();
    asio::post(io_, [fn = std::move(fn), done] {
      fn();
      done->set_value();
    });
    if (finished.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      std::cerr << "fault proxy: io thread did not answer within 10 s\n";
    }
  }

  void CloseAllSessions();
  void Shutdown() {
    RunOnIo([this] {
      error_code ec;
      acceptor_.close(ec);
      CloseAllSessions();
    });
    io_.stop();
  }

  FaultProxy& owner() { return owner_; }
  Clock::time_point& next_free(int dir) { return next_free_[dir]; }

 private:
  awaitable<void> AcceptLoop();

  FaultProxy& owner_;
  asio::io_context io_{1};
  tcp::acceptor acceptor_;
  std::vector<std::weak_ptr<Session>> sessions_;
  Clock::time_point next_free_[2] = {};  // bandwidth pacing, per direction
};

class FaultProxy::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl& impl, tcp::socket client)
      : impl_(impl),
        client_(std::move(client)),
        server_(client_.get_executor()),
        channels_{ChunkChannel(client_.get_executor(), kMaxQueuedChunks),
                  ChunkChannel(client_.get_executor(), kMaxQueuedChunks)} {}
  ~Session() {
    if (counted_) impl_.owner().active_--;
  }

  static awaitable<void> Run(std::shared_ptr<Session> self) {
    co_await self->WaitWhileHung();
    if (self->closed_ || self->Mode() == static_cast<int>(CutMode::kClose)) {
      self->Close();
      co_return;
    }
    error_code ec;
    tcp::endpoint target(asio::ip::make_address_v4("127.0.0.1"), TargetPort(self));
    co_await self->server_.async_connect(target, asio::redirect_error(use_awaitable, ec));
    if (ec || self->closed_) {
      self->Close();
      co_return;
    }
    self->counted_ = true;
    self->impl_.owner().active_++;
    auto ex = self->client_.get_executor();
    for (int dir : {0, 1}) {
      asio::co_spawn(ex, Reader(self, dir), asio::detached);
      asio::co_spawn(ex, Writer(self, dir), asio::detached);
    }
  }

  void Close() {
    closed_ = true;
    error_code ec;
    client_.close(ec);
    server_.close(ec);
    for (auto& ch : channels_) ch.close();
  }

 private:
  static uint16_t TargetPort(const std::shared_ptr<Session>& self) {
    return self->impl_.owner().target_port_;
  }
  int Mode() const { return impl_.owner().cut_mode_.load(); }
  tcp::socket& From(int dir) { return dir == 0 ? client_ : server_; }
  tcp::socket& To(int dir) { return dir == 0 ? server_ : client_; }

  awaitable<void> WaitWhileHung() {
    while (!closed_ && Mode() == static_cast<int>(CutMode::kHang)) {
      co_await SleepUntil(Clock::now() + std::chrono::milliseconds(5));
    }
  }

  static awaitable<void> Reader(std::shared_ptr<Session> self, int dir) {
    while (!self->closed_) {
      std::vector<uint8_t> buf(kChunkSize);
      error_code ec;
      size_t n = co_await self->From(dir).async_read_some(asio::buffer(buf),
                                                          asio::redirect_error(use_awaitable, ec));
      if (ec && ec != asio::error::eof) {
        self->Close();  // a reset on one side is a reset on both
        co_return;
      }
      const bool eof = static_cast<bool>(ec);
      buf.resize(eof ? 0 : n);
      auto delay = std::chrono::milliseconds(self->impl_.owner().delay_ms_.load());
      Chunk chunk{std::move(buf), Clock::now() + delay};
      co_await self->channels_[dir].async_send(error_code{}, std::move(chunk),
                                               asio::redirect_error(use_awaitable, ec));
      if (ec || eof) co_return;
    }
  }

  // Waits out the chunk's delay, the hang, and its bandwidth slot.
  awaitable<void> Pace(int dir, const Chunk& chunk) {
    co_await SleepUntil(chunk.due);
    co_await WaitWhileHung();
    uint64_t bw = impl_.owner().bandwidth_.load();
    if (bw == 0 || closed_) co_return;
    Clock::time_point& next = impl_.next_free(dir);
    auto start = std::max(Clock::now(), next);
    next = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                       static_cast<double>(chunk.data.size()) / static_cast<double>(bw)));
    co_await SleepUntil(next);
  }

  void Corrupt(int dir, std::vector<uint8_t>& data) {
    auto& pending = impl_.owner().corrupt_[dir];
    uint64_t want = pending.load();
    uint64_t take = 0;
    do {
      take = std::min<uint64_t>(want, data.size());
    } while (take > 0 && !pending.compare_exchange_weak(want, want - take));
    for (uint64_t i = 0; i < take; ++i) data[i] ^= 0x80;
  }

  static awaitable<void> Writer(std::shared_ptr<Session> self, int dir) {
    while (true) {
      error_code ec;
      Chunk chunk =
          co_await self->channels_[dir].async_receive(asio::redirect_error(use_awaitable, ec));
      if (ec || self->closed_) co_return;
      if (chunk.data.empty()) {  // FIN from the source: half-close towards the sink
        self->To(dir).shutdown(tcp::socket::shutdown_send, ec);
        co_return;
      }
      co_await self->Pace(dir, chunk);
      if (self->closed_) co_return;
      self->Corrupt(dir, chunk.data);
      co_await asio::async_write(self->To(dir), asio::buffer(chunk.data),
                                 asio::redirect_error(use_awaitable, ec));
      if (ec) {
        self->Close();
        co_return;
      }
      self->impl_.owner().forwarded_[dir] += chunk.data.size();
    }
  }

  Impl& impl_;
  tcp::socket client_;
  tcp::socket server_;
  ChunkChannel channels_[2];
  bool closed_ = false;
  bool counted_ = false;
};

void FaultProxy::Impl::CloseAllSessions() {
  for (auto& weak : sessions_) {
    if (auto s = weak.lock()) s->Close();
  }
  sessions_.clear();
}

awaitable<void> FaultProxy::Impl::AcceptLoop() {
  while (acceptor_.is_open()) {
    error_code ec;
    tcp::socket socket = co_await acceptor_.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
      continue;
    }
    owner_.accepted_++;
    if (owner_.cut_mode_.load() == static_cast<int>(CutMode::kClose)) {
      socket.close(ec);
      continue;
    }
    std::erase_if(sessions_, [](const std::weak_ptr<Session>& w) { return w.expired(); });
    auto session = std::make_shared<Session>(*this, std::move(socket));
    sessions_.push_back(session);
    asio::co_spawn(io_, Session::Run(session), asio::detached);
  }
}

FaultProxy::FaultProxy(uint16_t target_port) : target_port_(target_port) {}

FaultProxy::~FaultProxy() { Stop(); }

Status FaultProxy::Start() {
  if (impl_) return Status::InvalidArgument("fault proxy already started");
  impl_ = std::make_unique<Impl>(*this);
  Status st = impl_->Listen();
  if (!st.ok()) {
    impl_.reset();
    return st;
  }
  thread_ = std::thread([this] { impl_->Run(); });
  return Status::Ok();
}

void FaultProxy::Stop() {
  if (!impl_) return;
  if (thread_.joinable()) {
    impl_->Shutdown();
    thread_.join();
  }
  // Destroys pending coroutine frames (and their sessions) while the counters
  // they update still exist.
  impl_.reset();
}

std::string FaultProxy::ConnInfo(const std::string& rest) const {
  return fmt::format("host=127.0.0.1 port={} {}", port_, rest);
}

void FaultProxy::Cut(CutMode mode) {
  cut_mode_.store(static_cast<int>(mode));
  if (mode == CutMode::kClose && impl_) impl_->RunOnIo([this] { impl_->CloseAllSessions(); });
}

void FaultProxy::Restore() { cut_mode_.store(kNotCut); }

bool FaultProxy::IsCut() const { return cut_mode_.load() != kNotCut; }

void FaultProxy::SetDelay(std::chrono::milliseconds one_way) { delay_ms_.store(one_way.count()); }

void FaultProxy::SetBandwidth(uint64_t bytes_per_second) { bandwidth_.store(bytes_per_second); }

void FaultProxy::CorruptNextBytes(Direction direction, uint64_t n) {
  corrupt_[Index(direction)] += n;
}

uint64_t FaultProxy::BytesForwarded(Direction direction) const {
  return forwarded_[Index(direction)].load();
}

}  // namespace geosync::testing
