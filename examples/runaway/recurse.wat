;; recurse: unbounded recursion. The Keep's wasm stack is 512 KiB; the guest traps with a
;; stack overflow instead of taking the host down.
;;
;;   motte run examples/runaway/recurse.wasm   -> motte: guest trapped: stack overflow ...
(module
  (memory (export "memory") 1)
  (func $down (param i64) (result i64)
    (i64.add (call $down (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
  (func (export "_start") (drop (call $down (i64.const 0)))))
