#include "common/gpu.h"

#include <memory>

namespace ternvk::test {

Instance& instance() {
  static Instance the_instance;
  return the_instance;
}

Device& device() {
  static Device the_device(instance(), instance().select());
  return the_device;
}

}  // namespace ternvk::test
