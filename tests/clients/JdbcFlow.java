// The client scenario of tests/test_server_clients.py, through PostgreSQL JDBC (always the
// extended protocol; server-prepared statements after prepareThreshold executions).
// Usage: java -cp postgresql.jar:. JdbcFlow <jdbc url> <user> <password> <collection> <docs.tsv>
import java.nio.file.*;
import java.sql.*;
import java.util.*;

public class JdbcFlow {
  static String q(String s) { return s == null ? "null" : "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\""; }

  public static void main(String[] a) throws Exception {
    String coll = a[3];
    List<String> docs = Files.readAllLines(Paths.get(a[4]));
    try (Connection c = DriverManager.getConnection(a[0], a[1], a[2]); Statement s = c.createStatement()) {
      s.execute("DROP COLLECTION IF EXISTS " + coll);
      s.execute("CREATE COLLECTION " + coll + " (title text, year int) WITH (dense => 'none', dim => 3)");
      try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + coll + " (id, title, year, metadata, embedding) VALUES (?, ?, ?, ?, ?)")) {
        for (String line : docs) {
          if (line.isEmpty()) continue;
          String[] f = line.split("\t");
          ps.setString(1, f[0]); ps.setString(2, f[1]); ps.setInt(3, Integer.parseInt(f[2])); ps.setString(4, f[3]); ps.setString(5, f[4]);
          ps.executeUpdate();
        }
      }
      String search = "SELECT id, score FROM " + coll + " SEARCH HYBRID(SPARSE(?), DENSE(?)) WITH PRF DIVERSIFY BY COVERAGE(candidates => 10) WHERE year >= ? LIMIT 3";
      StringBuilder rows = new StringBuilder();
      for (int run = 0; run < 6; run++) {  // past prepareThreshold (5): a named server-side statement
        rows.setLength(0);
        try (PreparedStatement ps = c.prepareStatement(search)) {
          ps.setString(1, "sparse retrieval"); ps.setString(2, "[1,0,0]"); ps.setInt(3, 2020);
          try (ResultSet rs = ps.executeQuery()) {
            while (rs.next()) rows.append(rows.length() > 0 ? "," : "").append("[" + q(rs.getString(1)) + "," + rs.getDouble(2) + "]");
          }
        }
      }
      System.out.println("{\"step\":\"search\",\"rows\":[" + rows + "]}");
      StringBuilder lines = new StringBuilder();
      try (ResultSet rs = s.executeQuery("EXPLAIN ANALYZE SELECT id, score FROM " + coll + " SEARCH SPARSE('retrieval') LIMIT 3")) {
        while (rs.next()) lines.append(lines.length() > 0 ? "," : "").append(q(rs.getString(1)));
      }
      System.out.println("{\"step\":\"explain\",\"lines\":[" + lines + "]}");
      try {
        s.executeQuery("SELECT id FROM " + coll + " SEARCH SPARSE('x') LIMT 5");
      } catch (SQLException e) {
        int position = ((org.postgresql.util.PSQLException) e).getServerErrorMessage().getPosition();
        System.out.println("{\"step\":\"syntax\",\"code\":" + q(e.getSQLState()) + ",\"position\":" + position + "}");
      }
      c.setAutoCommit(false);
      s.execute("CREATE TABLE " + coll + "_notes (id text PRIMARY KEY, note text)");
      try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + coll + "_notes VALUES (?, ?), (?, ?)")) {
        ps.setString(1, "d1"); ps.setString(2, "first note"); ps.setString(3, "tx"); ps.setString(4, "note on tx");
        ps.executeUpdate();
      }
      try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + coll + " (id, title, year, embedding) VALUES (?, ?, ?, ?)")) {
        ps.setString(1, "tx"); ps.setString(2, "zebra transaction"); ps.setInt(3, 2025); ps.setString(4, "[0,0,1]");
        ps.executeUpdate();
      }
      System.out.println("{\"step\":\"in_transaction\",\"rows\":" + ids(c, coll) + "}");
      StringBuilder join = new StringBuilder();
      try (ResultSet rs = s.executeQuery("SELECT n.id, n.note, d.title FROM " + coll + "_notes n JOIN sparsesql.\"" + coll + "__docs\" d ON d.id = n.id ORDER BY n.id")) {
        while (rs.next()) join.append(join.length() > 0 ? "," : "").append("[" + q(rs.getString(1)) + "," + q(rs.getString(2)) + "," + q(rs.getString(3)) + "]");
      }
      System.out.println("{\"step\":\"join\",\"rows\":[" + join + "]}");
      c.rollback();
      c.setAutoCommit(true);
      String notes;
      try (ResultSet rs = s.executeQuery("SELECT to_regclass('" + coll + "_notes')::text")) { rs.next(); notes = rs.getString(1); }
      int count;
      try (ResultSet rs = s.executeQuery("SELECT count(*) FROM sparsesql.\"" + coll + "__docs\"")) { rs.next(); count = rs.getInt(1); }
      System.out.println("{\"step\":\"after_rollback\",\"rows\":" + ids(c, coll) + ",\"notes\":" + q(notes) + ",\"count\":" + count + "}");
    }
  }

  static String ids(Connection c, String coll) throws SQLException {
    StringBuilder out = new StringBuilder();
    try (PreparedStatement ps = c.prepareStatement("SELECT id FROM " + coll + " SEARCH SPARSE(?) LIMIT 3")) {
      ps.setString(1, "zebra");
      try (ResultSet rs = ps.executeQuery()) { while (rs.next()) out.append(out.length() > 0 ? "," : "").append(q(rs.getString(1))); }
    }
    return "[" + out + "]";
  }
}
