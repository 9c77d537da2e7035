#include "core/cancel.h"

#include "core/error.h"

namespace sdflow {

void CancelToken::throw_if_cancelled() const {
  if (requested()) throw Error(ErrorKind::kCancelled, "interrupted by the user");
}

}  // namespace sdflow
