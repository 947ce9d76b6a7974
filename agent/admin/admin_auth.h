// Who may see what on the admin API. Anyone who reaches the port may send a
// request: the bearer token is the only proof of being an operator, so its
// file is checked like a key, compared in constant time, and without it
// /status and /readyz carry no text that can hold row values.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace geosync::admin {

// Tokens shorter than this are refused: `openssl rand -hex 32` gives 64.
inline constexpr size_t kMinTokenLength = 32;

// Config error unless `mode` (st_mode of `path`) gives group and others no
// access; the message says `chmod 600 <path>`. `what` names the setting
// ("admin.token_file", "--token-file").
Status CheckTokenFileMode(const std::string& path, mode_t mode, std::string_view what);

// Reads a token file: the token is the file's first line, trimmed. Refuses a
// file that group or others may read or write, and a token shorter than
// kMinTokenLength, with what to do about it. Errors name the file.
Result<std::string> ReadTokenFile(const std::string& path,
                                  std::string_view what = "admin.token_file");

// Whether `authorization` is "Bearer <token>"; constant time in the token.
// An empty `token` matches nothing.
bool TokenMatches(std::string_view authorization, const std::string& token);

// An error text as anyone may see it: the kind of error and its SQLSTATE
// ("PostgreSQL error 23505"), none of the message, which can quote row
// values (PostgreSQL's DETAIL, "row not found: (id)=(42)"). "" stays "".
std::string RedactErrorText(std::string_view text);

// /status for a caller without the token: every field whose text can come
// from applying, seeding or promoting (replica.apply.error,
// replica.seed.error, promotion.error, and last_error when it repeats one of
// them) goes through RedactErrorText. Other fields are unchanged.
nlohmann::json RedactStatus(nlohmann::json status);

// /readyz's reason for a caller without the token: "apply stopped: <error>"
// keeps only the redacted error.
std::string RedactReadinessReason(std::string_view reason);

}  // namespace geosync::admin
